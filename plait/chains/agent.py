"""A tool-calling agent: the model calls tools until it can answer, within a step limit.

The loop, one *step* per model call:

1. send the conversation (system prompt, user input, earlier tool calls and results) to the model
   with the tools bound (:meth:`ChatModel.bind_tools`);
2. if the reply asks for no tool, it is the answer: stop;
3. else run each requested tool and append its result as a tool message. A tool that raises, an
   unknown tool name or arguments that do not match the schema become an ``Error: ...`` result
   the model reads on the next step, so it can correct itself; the loop does not crash;
4. after ``max_steps`` model calls without a final answer, stop with ``finish_reason="max_steps"``.

Native tool calls (OpenAI-compatible models) and prompted JSON tool calls (local models, where
``supports_tools`` is False) both arrive as ``AssistantMessage.tool_calls``: the chat-model base
class does the prompting and parsing, so the loop is the same for both.

Every step and every tool call is a traced run (``agent``, ``step 1``, ``tool get_weather``...),
so ``PLAIT_TRACE=1`` or ``.with_tracing()`` prints the tree. ``stream`` yields
:class:`AgentEvent` as they happen: ``token`` (answer text), ``tool_call``, ``tool_result`` and a
last ``final`` event holding the :class:`AgentResult`.

Example::

    from plait.chains.agent import Agent
    from plait.fake import FakeChatModel, tool_call

    def add(a: int, b: int) -> int:
        '''Add two integers.'''
        return a + b

    model = FakeChatModel([tool_call("add", {"a": 2, "b": 3}), "2 + 3 = 5"])
    Agent(model, [add]).invoke("What is 2 + 3?").output   # "2 + 3 = 5"
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from plait import tracing
from plait.messages import (
    AnyMessage,
    AssistantChunk,
    AssistantMessage,
    Document,
    Message,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
    message_from,
)
from plait.runnable import Runnable, coerce
from plait.tools import Tool, to_tool

SYSTEM_PROMPT = ("You are a helpful assistant. Use the tools when they help; "
                 "when you have what you need, answer the user briefly.")


class AgentResult(BaseModel):
    """The final answer and how the agent got there."""

    output: str
    messages: list[AnyMessage] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    steps: int = 0
    finish_reason: Literal["stop", "max_steps"] = "stop"


class AgentEvent(BaseModel):
    """One thing that happened during a run (what ``Agent.stream`` yields)."""

    type: Literal["token", "tool_call", "tool_result", "final"]
    step: int
    content: str = ""
    tool_call: ToolCall | None = None
    error: bool = False
    result: AgentResult | None = None


def retriever_tool(retriever: Any, name: str = "search_documents",
                   description: str = "Search the indexed documents. Returns the best passages with their sources.",
                   max_chars: int = 500) -> Tool:
    """A tool that runs a retriever on a query and returns numbered passages with their sources."""
    step = coerce(retriever)

    def search(query: str) -> str:
        docs: list[Document] = list(step.invoke(query))
        if not docs:
            return "No documents found."
        lines = []
        for i, d in enumerate(docs, 1):
            text = " ".join(d.content.split())[:max_chars]
            lines.append(f"[{i}] ({d.metadata.get('source', d.id or 'unknown')}) {text}")
        return "\n".join(lines)

    return Tool.from_function(search, name=name, description=description)


def _tool_output(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


class Agent(Runnable[Any, AgentResult]):
    """The tool-calling loop. See the module docstring.

    Args:
        model: a chat model (native or prompted tool calling).
        tools: typed functions, :class:`~plait.tools.Tool` objects or pydantic models.
        system: the system prompt.
        max_steps: the most model calls in one run.
        model_options: options for every model call (e.g. ``max_tokens``, ``temperature``).
    """

    def __init__(self, model: Any, tools: Sequence[Any], *, system: str | None = SYSTEM_PROMPT,
                 max_steps: int = 6, model_options: dict[str, Any] | None = None) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.tools = [to_tool(t) for t in tools]
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"Two tools share a name: {names}; give each a unique name")
        self.model = model.bind_tools(self.tools)
        self.system = system
        self.max_steps = max_steps
        self.model_options = dict(model_options or {})

    def get_name(self) -> str:
        return self.name or "agent"

    def _start(self, input: Any) -> list[Message]:
        if isinstance(input, dict) and "input" in input:
            input = input["input"]
        if isinstance(input, str):
            messages: list[Message] = [UserMessage(content=input)]
        elif isinstance(input, list):
            messages = [message_from(m) for m in input]
        else:
            messages = [message_from(input)]
        if self.system and not any(m.role == "system" for m in messages):
            messages.insert(0, SystemMessage(content=self.system))
        return messages

    def run_tool(self, call: ToolCall) -> tuple[str, bool]:
        """Run one call; returns (the text for the model, whether it failed)."""
        with tracing.start_run(f"tool {call.name}", call.arguments) as run:
            tool = next((t for t in self.tools if t.name == call.name), None)
            if tool is None:
                known = ", ".join(t.name for t in self.tools)
                run.output = f"Error: there is no tool named {call.name!r}. Available tools: {known}."
                return run.output, True
            try:
                run.output = _tool_output(tool.invoke(call.arguments))
                return run.output, False
            except Exception as e:  # the model reads the error and can try again
                run.output = f"Error: {type(e).__name__}: {e}"
                return run.output, True

    def stream(self, input: Any, **kwargs: Any) -> Iterator[AgentEvent]:  # type: ignore[override]
        messages = self._start(input)
        options = {**self.model_options, **kwargs}
        calls: list[ToolCall] = []
        with tracing.start_run(self.get_name(), input) as agent_run:
            for step in range(1, self.max_steps + 1):
                with tracing.start_run(f"step {step}", list(messages)) as run:
                    total: AssistantChunk | None = None
                    for chunk in self.model.stream(messages, **options):
                        total = chunk if total is None else total + chunk
                        if chunk.content:
                            yield AgentEvent(type="token", step=step, content=chunk.content)
                    reply = total.to_message() if total is not None else AssistantMessage(content="")
                    run.output = reply
                if not reply.tool_calls:
                    messages.append(reply)
                    result = AgentResult(output=reply.content, messages=messages,  # type: ignore[arg-type]
                                         tool_calls=calls, steps=step)
                    agent_run.output = result
                    yield AgentEvent(type="final", step=step, content=reply.content, result=result)
                    return
                messages.append(reply)
                for call in reply.tool_calls:
                    calls.append(call)
                    yield AgentEvent(type="tool_call", step=step, tool_call=call)
                    text, failed = self.run_tool(call)
                    messages.append(ToolMessage(content=text, tool_call_id=call.id, name=call.name))
                    yield AgentEvent(type="tool_result", step=step, content=text, tool_call=call, error=failed)
            note = f"Stopped after {self.max_steps} steps without a final answer."
            result = AgentResult(output=note, messages=messages, tool_calls=calls,  # type: ignore[arg-type]
                                 steps=self.max_steps,
                                 finish_reason="max_steps")
            agent_run.output = result
            yield AgentEvent(type="final", step=self.max_steps, content=note, result=result)

    def invoke(self, input: Any, **kwargs: Any) -> AgentResult:
        for event in self.stream(input, **kwargs):
            if event.type == "final" and event.result is not None:
                return event.result
        raise AssertionError("the agent stream ended without a final event")
