"""An agent with two tools (typed Python functions). The model decides which to call.

With the local model the tools are described in the prompt and its JSON replies parsed (prompted
tool calling); with ``--model openai:MODEL`` the server's native tool calls are used. Every step
is printed as it streams. Run: python examples/agent_tools.py
"""

from __future__ import annotations

from typing import Any

from plait.chains.agent import Agent

try:
    from examples._model import example_model
except ImportError:
    from _model import example_model  # type: ignore[no-redef]


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


def main(model: Any = None, question: str = "What is 12 times 7?") -> Any:
    agent = Agent(example_model(model), [multiply, word_count], max_steps=3,
                  model_options={"max_tokens": 64, "temperature": 0})
    print(f"user> {question}")
    result = None
    for event in agent.stream(question):
        if event.type == "tool_call" and event.tool_call:
            print(f"  calls {event.tool_call.name}({event.tool_call.arguments})")
        elif event.type == "tool_result":
            print(f"  {'error' if event.error else 'result'}: {event.content}")
        elif event.type == "token":
            print(event.content, end="", flush=True)
        elif event.type == "final":
            result = event.result
    print()
    assert result is not None
    print(f"({result.steps} steps, {len(result.tool_calls)} tool calls, finish: {result.finish_reason})")
    return result


if __name__ == "__main__":
    main()
