"""Data types that cross boundaries: messages, chunks (and ``add_chunks``), documents, prompt values, image results.

All are pydantic models, so they validate, serialize (``model_dump``/``model_dump_json``) and
round-trip through the server and LangChain interop unchanged.

Example::

    from plait.messages import AssistantChunk
    total = AssistantChunk(content="Hel") + AssistantChunk(content="lo")
    total.to_message().content  # "Hello"
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]


class _Model(BaseModel):
    # Build validators on first use, not at import: keeps ``import plait.messages`` cheap.
    model_config = ConfigDict(defer_build=True)


class ToolCall(_Model):
    """A call the model asks for: tool name and parsed JSON arguments."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Usage(_Model):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage | None) -> Usage:
        if other is None:
            return self
        return Usage(prompt_tokens=self.prompt_tokens + other.prompt_tokens,
                     completion_tokens=self.completion_tokens + other.completion_tokens,
                     total_tokens=self.total_tokens + other.total_tokens)


class Message(_Model):
    """Base of all chat messages."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    role: Role
    content: str = ""
    name: str | None = None

    def text(self) -> str:
        return self.content


class SystemMessage(Message):
    role: Literal["system"] = "system"


class UserMessage(Message):
    role: Literal["user"] = "user"


class TopLogprob(_Model):
    """One candidate token at a position: its text, natural-log probability and UTF-8 bytes (as OpenAI)."""

    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    """A token of the reply with its log-probability and the most likely tokens at its position.

    The ``token`` strings of a reply's logprobs add up to its text (see docs/models.md for how a
    local model splits text among tokens); ``top_logprobs`` is sorted, most likely first.
    """

    top_logprobs: list[TopLogprob] = Field(default_factory=list)


def _join_logprobs(a: list[TokenLogprob] | None, b: list[TokenLogprob] | None) -> list[TokenLogprob] | None:
    if a is None or b is None:
        return b if a is None else a
    return a + b


class AssistantMessage(Message):
    """A model's reply: text, tool calls, usage, finish reason, the model id and, when asked for,
    the log-probabilities of its tokens (``logprobs``; None when not asked for)."""

    role: Literal["assistant"] = "assistant"
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None
    id: str | None = None
    logprobs: list[TokenLogprob] | None = None


class ToolMessage(Message):
    """The result of a tool call, sent back to the model."""

    role: Literal["tool"] = "tool"
    tool_call_id: str


AnyMessage = SystemMessage | UserMessage | AssistantMessage | ToolMessage

_BY_ROLE: dict[str, type[Message]] = {
    "system": SystemMessage, "user": UserMessage, "human": UserMessage,
    "assistant": AssistantMessage, "ai": AssistantMessage, "tool": ToolMessage,
}


def message_from(data: Any) -> Message:
    """Build a message from a Message, a ``(role, content)`` tuple or an OpenAI-style dict."""
    if isinstance(data, Message):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        role, content = data
        data = {"role": role, "content": content}
    if isinstance(data, dict):
        role = data.get("role")
        cls = _BY_ROLE.get(str(role))
        if cls is None:
            raise ValueError(f"Unknown message role {role!r}: use one of system, user, assistant, tool")
        fields = dict(data)
        fields["role"] = cls.model_fields["role"].default
        if cls is AssistantMessage and fields.get("tool_calls"):
            fields["tool_calls"] = [_tool_call_from(tc) for tc in fields["tool_calls"]]
        if fields.get("content") is None:
            fields["content"] = ""
        return cls(**fields)
    raise TypeError(f"Cannot make a chat message from {type(data).__name__}: pass a Message, "
                    "a (role, content) tuple or a dict with 'role' and 'content'")


def _tool_call_from(tc: Any) -> ToolCall:
    if isinstance(tc, ToolCall):
        return tc
    if "function" in tc:  # OpenAI wire format
        args = tc["function"].get("arguments") or "{}"
        return ToolCall(id=tc.get("id", ""), name=tc["function"]["name"],
                        arguments=json.loads(args) if isinstance(args, str) else args)
    return ToolCall(**tc)


class ToolCallChunk(_Model):
    """Part of a streamed tool call; chunks with the same index add up."""

    index: int = 0
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class AssistantChunk(_Model):
    """A piece of a streamed reply. Chunks add up with ``+``; ``to_message()`` gives the message.

    ``logprobs``: the tokens of this piece's ``content`` with their log-probabilities, when asked for
    (lists add up in order; None + None stays None).
    """

    content: str = ""
    tool_call_chunks: list[ToolCallChunk] = Field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None
    id: str | None = None
    logprobs: list[TokenLogprob] | None = None

    def __add__(self, other: AssistantChunk) -> AssistantChunk:
        if not isinstance(other, AssistantChunk):
            return NotImplemented
        calls = {c.index: c.model_copy() for c in self.tool_call_chunks}
        for c in other.tool_call_chunks:
            if c.index in calls:
                prev = calls[c.index]
                calls[c.index] = ToolCallChunk(index=c.index, id=prev.id or c.id, name=prev.name or c.name,
                                               arguments=prev.arguments + c.arguments)
            else:
                calls[c.index] = c
        usage = self.usage + other.usage if self.usage else other.usage
        return AssistantChunk(
            content=self.content + other.content, tool_call_chunks=[calls[i] for i in sorted(calls)],
            usage=usage, finish_reason=other.finish_reason or self.finish_reason,
            model=self.model or other.model, id=self.id or other.id,
            logprobs=_join_logprobs(self.logprobs, other.logprobs))

    def text(self) -> str:
        return self.content

    def to_message(self) -> AssistantMessage:
        """The complete message. Raises ValueError if a tool call's arguments are not valid JSON."""
        calls = []
        for c in self.tool_call_chunks:
            try:
                args = json.loads(c.arguments) if c.arguments.strip() else {}
            except json.JSONDecodeError as e:
                raise ValueError(f"Tool call {c.name!r} has arguments that are not valid JSON: {c.arguments!r}") from e
            calls.append(ToolCall(id=c.id or f"call_{c.index}", name=c.name or "", arguments=args))
        return AssistantMessage(content=self.content, tool_calls=calls, usage=self.usage,
                                finish_reason=self.finish_reason, model=self.model, id=self.id,
                                logprobs=self.logprobs)


def add_chunks(total: Any, chunk: Any) -> Any:
    """Add stream chunks up: strings and chunk types by ``+``, dicts key by key, else the last wins.

    A chunk that cannot be added to what came before (``"abc"`` then ``5``) raises ``TypeError``
    instead of silently replacing it: a stream that mixes kinds of chunk is a bug in the step.
    """
    if total is None:
        return chunk
    if isinstance(total, dict) and isinstance(chunk, dict):
        merged = dict(total)
        for key, value in chunk.items():
            merged[key] = add_chunks(merged.get(key), value)
        return merged
    if hasattr(total, "__add__") and not isinstance(total, (int, float, list, tuple, bool)):
        try:
            return total + chunk
        except TypeError:
            raise TypeError(f"Cannot add a {type(chunk).__name__} chunk to a stream of {type(total).__name__} "
                            "chunks: a step's stream must yield one kind of chunk") from None
    return chunk


class Document(_Model):
    """A piece of text with metadata (source, page, chunk index, character span) and an optional score."""

    content: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None
    score: float | None = None

    @property
    def source(self) -> str | None:
        return self.metadata.get("source")


class StringPromptValue(_Model):
    """A formatted text prompt."""

    text: str

    def to_string(self) -> str:
        return self.text

    def to_messages(self) -> list[Message]:
        return [UserMessage(content=self.text)]


class ChatPromptValue(_Model):
    """A formatted list of chat messages."""

    messages: list[AnyMessage]

    def to_string(self) -> str:
        return "\n".join(f"{m.role}: {m.content}" for m in self.messages)

    def to_messages(self) -> list[Message]:
        return list(self.messages)


PromptValue = StringPromptValue | ChatPromptValue


def to_messages(value: Any) -> list[Message]:
    """Normalise what a chat model accepts: a string, a prompt value, a message or a list of them."""
    if isinstance(value, str):
        return [UserMessage(content=value)]
    if isinstance(value, (StringPromptValue, ChatPromptValue)):
        return value.to_messages()
    if isinstance(value, (Message, dict, tuple)):
        return [message_from(value)]
    if isinstance(value, list):
        return [message_from(m) for m in value]
    raise TypeError(f"A chat model takes a string, a prompt value or a list of messages, not {type(value).__name__}")


class ImageResult(_Model):
    """Images from an image model plus every parameter used, so each can be regenerated exactly."""

    model_config = ConfigDict(arbitrary_types_allowed=True, defer_build=True)
    images: list[Any]  # PIL.Image.Image; typed loosely so importing plait never imports PIL
    parameters: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None

    def save(self, path: str) -> list[str]:
        """Save the images: ``out.png`` for one image, ``out-0.png``, ``out-1.png``... for several."""
        import os

        if len(self.images) == 1:
            self.images[0].save(path)
            return [path]
        stem, ext = os.path.splitext(path)
        paths = [f"{stem}-{i}{ext or '.png'}" for i in range(len(self.images))]
        for img, p in zip(self.images, paths, strict=True):
            img.save(p)
        return paths


class ProgressEvent(_Model):
    """Streamed by image models while they work: step ``step`` of ``total``, with an optional preview."""

    model_config = ConfigDict(arbitrary_types_allowed=True, defer_build=True)
    step: int
    total: int
    preview: Any = None  # small PIL image, when asked for
