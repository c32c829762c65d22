"""An agent with two tools (typed Python functions). The model decides which to call.

With the local model the tools are described in the prompt and its replies are held to the
tool-call grammar while it decodes (constrained decoding); with ``--model openai:MODEL`` the
server's native tool calls are used. Every step is printed as it streams.

The bundled 135M model does not decide to call a tool on its own (asked "What is 12 times 7?" it
answers "12 * 7 = 80"), so with it the first step is made a tool call (``tool_choice="required"``):
the grammar then guarantees a call of one of the tools with valid arguments, and the model picks
which tool and the numbers. The answer that follows the tool's result needs a bigger model; the
example says so when run.

Run: .venv/bin/python examples/agent_tools.py [--model openai:MODEL]
"""

from __future__ import annotations

from typing import Any

from plait.chains.agent import Agent, AgentResult

try:
    from examples._model import bigger_model_note, example_model, is_bundled
except ImportError:
    from _model import bigger_model_note, example_model, is_bundled  # type: ignore[no-redef]


def multiply(a: float, b: float) -> float:
    """Multiply two numbers.

    Args:
        a: the first number.
        b: the second number.
    """
    return a * b


def word_count(text: str) -> int:
    """Count the words in a text.

    Args:
        text: the text to count.
    """
    return len(text.split())


def run(agent: Agent, input: Any) -> AgentResult:
    """Run the agent, printing each event as it happens."""
    result = None
    for event in agent.stream(input):
        if event.type == "tool_call" and event.tool_call:
            print(f"  calls {event.tool_call.name}({event.tool_call.arguments})")
        elif event.type == "tool_result":
            print(f"  {'error' if event.error else 'result'}: {event.content}")
        elif event.type == "token":
            print(event.content, end="", flush=True)
        elif event.type == "final":
            result = event.result
    assert result is not None
    return result


def main(model: Any = None, question: str = "What is 12 times 7?") -> AgentResult:
    model = example_model(model)
    tools = [multiply, word_count]
    options = {"max_tokens": 64, "temperature": 0}
    print(f"user> {question}")
    small = is_bundled(model)
    if small:  # step 1 must be a tool call; the grammar holds the reply to one of the tools' schemas
        first = run(Agent(model, tools, max_steps=1, model_options={**options, "tool_choice": "required"}), question)
        result = run(Agent(model, tools, max_steps=1, model_options={**options, "tool_choice": "none"}),
                     first.messages)
        result = result.model_copy(update={"steps": first.steps + result.steps,
                                           "tool_calls": first.tool_calls + result.tool_calls})
    else:
        result = run(Agent(model, tools, max_steps=3, model_options=options), question)
    print()
    print(f"({result.steps} steps, {len(result.tool_calls)} tool calls, finish: {result.finish_reason})")
    if small:
        print(bigger_model_note("the tool call above was forced (tool_choice='required'); choosing when to "
                                "call a tool, and writing the answer from its result, take a bigger model."))
    return result


if __name__ == "__main__":
    main()
