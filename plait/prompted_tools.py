"""Tool calling and JSON output by prompting, for chat backends without them built in.

:class:`~plait.chat_model.ChatModel` uses this when a backend has ``supports_tools = False`` (or
``supports_json_schema = False``): the tools (or the JSON schema) are described in the system
message, the model answers with a JSON tool call, and the answer is parsed back into
``AssistantMessage.tool_calls``. Earlier tool calls and tool results in the conversation are
rewritten as plain assistant/user turns, which every chat template understands.

The tool-call format the model is asked for::

    {"tool": "get_weather", "arguments": {"city": "Paris"}}

Also understood: a JSON list of those, ``{"name": ..., "arguments": ...}``, the OpenAI
``{"function": {...}}`` shape, code fences and ``<tool_call>...</tool_call>`` tags (Hermes/Qwen style).

Local models use the same instructions and form, but hold the reply to it with a grammar while
decoding (:mod:`plait.local_models.llm.constrained`), so they do not need the parsing here.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from plait.messages import (
    AssistantChunk,
    AssistantMessage,
    Message,
    SystemMessage,
    ToolCall,
    ToolCallChunk,
    ToolMessage,
    UserMessage,
)
from plait.parsers import OutputParserError, parse_json
from plait.tools import Tool

_TAGGED = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
# A reply that begins like one of these may be a tool call, so a stream holds it back until the end.
_MAYBE_CALL = ("{", "[", "```", "<tool_call>")


def add_system(messages: list[Message], text: str) -> list[Message]:
    """Add instructions to the system message (many chat templates allow only one, first)."""
    if messages and isinstance(messages[0], SystemMessage):
        first = messages[0]
        joined = f"{first.content}\n\n{text}" if first.content else text
        return [first.model_copy(update={"content": joined}), *messages[1:]]
    return [SystemMessage(content=text), *messages]


def tool_instructions(tools: list[Tool], tool_choice: str | None, parallel: bool = True) -> str:
    """The system-message text describing the tools and how to call them (one call only unless ``parallel``)."""
    specs = "\n".join(json.dumps(t.spec(), ensure_ascii=False) for t in tools)
    text = ("You can call these tools (JSON schema of each tool's arguments):\n"
            f"{specs}\n\n"
            "To call a tool, reply with only a JSON object and nothing else, in this form:\n"
            '{"tool": "<tool name>", "arguments": {<the arguments>}}\n'
            + ("To call several tools at once, reply with a JSON list of such objects. " if parallel else
               "Call one tool at a time. ")
            + "When no tool is needed, or once you have the tool results you need, answer in plain text.")
    if tool_choice == "required":
        text += "\nYou must call one of the tools now."
    elif tool_choice not in (None, "auto", "none"):
        text += f"\nYou must call the tool {tool_choice!r} now."
    return text


def json_instructions(response_format: dict[str, Any]) -> str:
    """The system-message text asking for JSON output (for a ``response_format`` option)."""
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema", {})
        return ("Reply with only a JSON object (no prose, no code fences) that matches this JSON schema:\n"
                f"{json.dumps(schema, ensure_ascii=False)}")
    if kind == "json_object":
        return "Reply with only a JSON object (no prose, no code fences)."
    raise ValueError(f"Unknown response_format type {kind!r}: use 'json_schema' or 'json_object'")


def flatten_tool_history(messages: list[Message]) -> list[Message]:
    """Rewrite tool calls and tool results as plain assistant and user turns."""
    if not any(isinstance(m, ToolMessage) or (isinstance(m, AssistantMessage) and m.tool_calls)
               for m in messages):
        return messages
    names: dict[str, str] = {}
    out: list[Message] = []
    for m in messages:
        if isinstance(m, AssistantMessage) and m.tool_calls:
            calls = [{"tool": c.name, "arguments": c.arguments} for c in m.tool_calls]
            names.update({c.id: c.name for c in m.tool_calls})
            text = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
            out.append(AssistantMessage(content=f"{m.content}\n{text}" if m.content else text))
        elif isinstance(m, ToolMessage):
            name = m.name or names.get(m.tool_call_id, "tool")
            out.append(UserMessage(content=f"Result of the {name} tool call: {m.content}"))
        else:
            out.append(m)
    return out


def _new_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_tool_calls(text: str, tools: list[Tool]) -> list[ToolCall] | None:
    """The tool calls in a reply, or None when the reply is not (only) a call to a known tool."""
    body = text.strip()
    # Tags count only at the start, as every other form: a stream decides from the first characters.
    tagged = _TAGGED.findall(body) if body.startswith("<tool_call>") else []
    if tagged:
        body = "[" + ",".join(t.strip() for t in tagged if t.strip()) + "]"
    if not body.startswith(("{", "[", "```")):
        return None
    try:
        data = parse_json(body)
    except OutputParserError:
        return None
    items = data if isinstance(data, list) else [data]
    if tagged and len(items) == 1 and isinstance(items[0], list):
        items = items[0]
    known = {t.name for t in tools}
    calls = []
    for item in items:
        if not isinstance(item, dict):
            return None
        fn: dict[str, Any] = item["function"] if isinstance(item.get("function"), dict) else item
        name = fn.get("tool") or fn.get("name")
        args = fn.get("arguments", fn.get("parameters", fn.get("args", {})))
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                return None
        if not isinstance(name, str) or name not in known or not isinstance(args, dict):
            return None
        calls.append(ToolCall(id=_new_id(), name=name, arguments=args))
    return calls or None


def with_parsed_calls(msg: AssistantMessage, tools: list[Tool]) -> AssistantMessage:
    """The message with a prompted tool call in its text turned into ``tool_calls``."""
    if msg.tool_calls:
        return msg
    calls = parse_tool_calls(msg.content, tools)
    if calls is None:
        return msg
    return msg.model_copy(update={"content": "", "tool_calls": calls, "finish_reason": "tool_calls"})


class _CallStreamer:
    """Passes a prompted-tools stream through, but holds back a reply that may be a tool call."""

    def __init__(self, tools: list[Tool]) -> None:
        self.tools = tools
        self.held: AssistantChunk | None = None
        self.passing = False

    def feed(self, chunk: AssistantChunk) -> list[AssistantChunk]:
        if self.passing:
            return [chunk]
        self.held = chunk if self.held is None else self.held + chunk
        text = self.held.content.lstrip()
        if not text:
            return []
        if text.startswith(_MAYBE_CALL) or any(p.startswith(text) for p in _MAYBE_CALL):
            return []  # could still be a tool call: wait for the end
        self.passing, out, self.held = True, [self.held], None
        return out

    def end(self) -> list[AssistantChunk]:
        if self.held is None:
            return []
        held, self.held = self.held, None
        calls = parse_tool_calls(held.content, self.tools)
        if calls is None:
            return [held]
        return [held.model_copy(update={
            "content": "", "finish_reason": "tool_calls",
            "tool_call_chunks": [ToolCallChunk(index=i, id=c.id, name=c.name, arguments=json.dumps(c.arguments))
                                 for i, c in enumerate(calls)]})]


def stream_calls(chunks: Iterator[AssistantChunk], tools: list[Tool]) -> Iterator[AssistantChunk]:
    """Stream a prompted-tools reply: text streams as it comes, a tool call arrives parsed at the end."""
    streamer = _CallStreamer(tools)
    for chunk in chunks:
        yield from streamer.feed(chunk)
    yield from streamer.end()


async def astream_calls(chunks: AsyncIterator[AssistantChunk], tools: list[Tool]) -> AsyncIterator[AssistantChunk]:
    streamer = _CallStreamer(tools)
    async for chunk in chunks:
        for out in streamer.feed(chunk):
            yield out
    for out in streamer.end():
        yield out
