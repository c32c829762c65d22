"""How a served object answers an OpenAI chat request.

- A plait :class:`~plait.chat_model.ChatModel` takes the OpenAI messages directly (converted to
  plait messages) and the request's generation options (``temperature``, ``max_tokens``, ``stop``,
  ``tools``...) when its ``Options`` know them; an option it does not know is a 400, never dropped.
- Any other Runnable (a chain) gets the **text of the last user message**. With
  ``ServeConfig.input_key`` it gets ``{input_key: text}`` instead, plus ``{history_key: earlier
  messages}`` when ``history_key`` is set. A chain fixes its own generation options, so the
  request's sampling options are not passed to it (the response's ``x-plait-ignored-options``
  header names them); ``tools`` is refused (a chain cannot take them).

What comes back is normalised into :class:`Piece` (one streamed piece) / :class:`Reply`:
strings and assistant messages/chunks give the text (and tool calls, usage, finish reason); a dict
or pydantic object with ``answer`` (such as :class:`plait.chains.rag.RAGAnswer`) gives its answer as
the text, and its ``sources`` and ``citations`` (the cited subset) as extra fields of the same
names; an :class:`~plait.messages.ImageResult` gives base64 PNGs in the extra ``images`` field;
any other value is sent as JSON text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from plait.messages import (
    AssistantChunk,
    AssistantMessage,
    Document,
    ImageResult,
    Message,
    ProgressEvent,
    ToolCallChunk,
    Usage,
    UserMessage,
    add_chunks,
)
from plait.runnable import Runnable
from plait.serve.config import ServeConfig
from plait.serve.convert import image_b64, jsonable, messages_from_openai
from plait.serve.errors import APIError

# Request fields that are generation options, and the option name a ChatModel knows them by.
_OPTION_FIELDS = {
    "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens", "stop": "stop", "seed": "seed", "tools": "tools",
    "tool_choice": "tool_choice", "parallel_tool_calls": "parallel_tool_calls",
    "response_format": "response_format", "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty", "logit_bias": "logit_bias",
    "guided_regex": "guided_regex", "guided_choice": "guided_choice",
}
# Options a served RAG chain passes on to its model (sampling and length; never tools).
_CHAIN_MODEL_FIELDS = ("temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "stop", "seed",
                       "presence_penalty", "frequency_penalty")
_WORDS = re.compile(r"\S+")


@dataclass(slots=True)
class Piece:
    """One streamed piece of an answer, whatever the served object yielded."""

    content: str = ""
    tool_calls: list[ToolCallChunk] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    sources: list[Any] | None = None
    citations: list[Any] | None = None
    images: list[dict[str, str]] | None = None
    other: Any = None  # a chunk of a non-answer output; sent as JSON text at the end


@dataclass
class Reply:
    """A whole answer: what a completion (or a stream's last chunks) reports."""

    content: str = ""
    tool_calls: list[ToolCallChunk] = field(default_factory=list)  # whole calls, arguments as sent
    finish_reason: str = "stop"
    usage: Usage | None = None
    pieces: int = 0  # pieces of text streamed: the completion-token estimate when there is no usage
    sources: list[Any] | None = None
    citations: list[Any] | None = None
    images: list[dict[str, str]] | None = None


class Answer:
    """Adds up the pieces of one answer, the same way for a stream and for a whole completion.

    ``one_call``: keep the first tool call only (``parallel_tool_calls=false`` for a model that
    does not take that option itself).
    """

    __slots__ = ("texts", "calls", "finish", "usage", "sources", "citations", "images", "other", "one_call",
                 "max_tokens")

    def __init__(self, one_call: bool = False, max_tokens: int | None = None) -> None:
        self.texts: list[str] = []
        self.calls: dict[int, ToolCallChunk] = {}
        self.finish: str | None = None
        self.usage: Usage | None = None
        self.sources: list[Any] | None = None
        self.citations: list[Any] | None = None
        self.images: list[dict[str, str]] = []
        self.other: Any = None
        self.one_call = one_call
        self.max_tokens = max_tokens  # a chain reports no finish reason: its usage tells "length"

    def calls_of(self, piece: Piece) -> list[ToolCallChunk]:
        """The piece's tool-call chunks this answer keeps (and adds up)."""
        kept = []
        for c in piece.tool_calls or ():
            if self.one_call and c.index != 0:
                continue
            kept.append(c)
            have = self.calls.get(c.index)
            self.calls[c.index] = c.model_copy() if have is None else have.model_copy(update={
                "id": have.id or c.id, "name": have.name or c.name, "arguments": have.arguments + c.arguments})
        return kept

    def add(self, piece: Piece) -> list[ToolCallChunk]:
        """Add a piece; returns its tool-call chunks that are kept."""
        if piece.content:
            self.texts.append(piece.content)
        calls = self.calls_of(piece) if piece.tool_calls else []
        if piece.usage is not None:
            self.usage = piece.usage if self.usage is None else self.usage + piece.usage
        if piece.finish_reason:
            self.finish = piece.finish_reason
        if piece.sources is not None:
            self.sources = piece.sources
        if piece.citations is not None:
            self.citations = piece.citations
        if piece.images:
            self.images.extend(piece.images)
        if piece.other is not None:
            self.other = add_chunks(self.other, piece.other)
        return calls

    def other_text(self) -> str | None:
        """A chain whose output is not text: its JSON is the answer (when it streamed no text)."""
        if self.other is None or self.texts:
            return None
        return json.dumps(jsonable(self.other), ensure_ascii=False)

    def reply(self) -> Reply:
        extra = self.other_text()
        if extra is not None:
            self.texts.append(extra)
        calls = [self.calls[i] for i in sorted(self.calls)]
        finish = self.finish
        if finish is None and self.max_tokens and self.usage and self.usage.completion_tokens >= self.max_tokens:
            finish = "length"
        return Reply(content="".join(self.texts), tool_calls=calls,
                     finish_reason=finish or ("tool_calls" if calls else "stop"), usage=self.usage,
                     pieces=len(self.texts), sources=self.sources, citations=self.citations,
                     images=self.images or None)


def _images(result: ImageResult) -> list[dict[str, str]]:
    return [{"b64_json": image_b64(im), "mime_type": "image/png"} for im in result.images]


def _image_text(result: ImageResult) -> str:
    n = len(result.images)
    prompt = result.parameters.get("prompt")
    return f"Generated {n} image{'s' if n != 1 else ''}" + (f" for: {prompt}" if prompt else ".")


def _as_mapping(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, BaseModel) and not isinstance(value, (AssistantMessage, AssistantChunk, Message)):
        return {k: getattr(value, k) for k in type(value).model_fields}
    return None


def sources_json(value: Any) -> list[Any]:
    items = value if isinstance(value, (list, tuple)) else [value]
    return [jsonable(s) for s in items]


def piece_from(chunk: Any) -> Piece | None:
    """Normalise one streamed chunk; ``None`` for chunks that carry nothing for the client."""
    if isinstance(chunk, str):
        return Piece(content=chunk)
    if isinstance(chunk, AssistantChunk):
        return Piece(content=chunk.content, tool_calls=chunk.tool_call_chunks or None,
                     finish_reason=chunk.finish_reason, usage=chunk.usage)
    if isinstance(chunk, AssistantMessage):
        calls = [ToolCallChunk(index=i, id=tc.id, name=tc.name, arguments=json.dumps(tc.arguments))
                 for i, tc in enumerate(chunk.tool_calls)]
        return Piece(content=chunk.content, tool_calls=calls or None, finish_reason=chunk.finish_reason,
                     usage=chunk.usage)
    if chunk is None or isinstance(chunk, ProgressEvent):
        return None
    if isinstance(chunk, ImageResult):
        return Piece(content=_image_text(chunk), images=_images(chunk))
    mapping = _as_mapping(chunk)
    if mapping is not None:
        if "answer" in mapping or "sources" in mapping:
            # Chunks of an answer-with-sources: empty source lists mean "none in this chunk".
            piece = piece_from(mapping.get("answer")) or Piece()
            if mapping.get("sources"):
                piece.sources = sources_json(mapping["sources"])
            if mapping.get("citations"):
                piece.citations = sources_json(mapping["citations"])
            if isinstance(mapping.get("usage"), Usage):
                piece.usage = mapping["usage"]
            return piece
        return Piece(other=mapping)
    if isinstance(chunk, list) and chunk and all(isinstance(d, Document) for d in chunk):
        return Piece(content="\n\n".join(d.content for d in chunk), sources=sources_json(chunk))
    return Piece(other=chunk)


def estimate_tokens(text: str) -> int:
    """A word count, used as the completion token count when the served object reports no usage."""
    return len(_WORDS.findall(text))


class ChatTarget:
    """The served object seen from ``/v1/chat/completions``: builds its input and options.

    A chat model takes the request's options (an option its ``Options`` do not know is a 400).
    A chain that passes options to its chat model (``model`` and ``model_options`` attributes,
    like :class:`~plait.chains.rag.RAGChain`) takes the sampling and length options its model
    knows; other options, and all options for any other chain, are reported in the
    ``x-plait-ignored-options`` header.
    """

    def __init__(self, runnable: Runnable[Any, Any], config: ServeConfig) -> None:
        from plait.chat_model import ChatModel

        self.runnable = runnable
        self.is_chat_model = isinstance(runnable, ChatModel)
        self.config = config
        inner = getattr(runnable, "model", None)
        self.model: ChatModel | None = runnable if self.is_chat_model else (  # type: ignore[assignment]
            inner if isinstance(inner, ChatModel) and hasattr(runnable, "model_options") else None)
        fields = set(type(self.model).Options.model_fields) if self.model is not None else set()
        self.option_names: set[str] = fields if self.is_chat_model else {
            _OPTION_FIELDS[w] for w in _CHAIN_MODEL_FIELDS if _OPTION_FIELDS[w] in fields}

    def prepare(self, request: Any) -> tuple[Any, dict[str, Any]]:
        """The input and options for one request (a parsed ``ChatCompletionRequest``)."""
        messages = messages_from_openai(request.messages)
        if self.is_chat_model:
            return messages, self._options(request)
        if request.tools:
            raise APIError(400, "The served chain does not take tools; serve a chat model to use tool calling.",
                           param="tools")
        last = next((i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], UserMessage)), None)
        if last is None:
            raise APIError(400, "messages must contain a user message: the served chain answers the last one.",
                           param="messages")
        text = messages[last].content
        options = self._chain_options(request)
        if self.config.input_key is None:
            return text, options
        value: dict[str, Any] = {self.config.input_key: text}
        if self.config.history_key is not None:
            value[self.config.history_key] = messages[:last]
        return value, options

    def one_call(self, request: Any) -> bool:
        """Whether the server must keep only the first tool call (the model cannot be told)."""
        return request.parallel_tool_calls is False and "parallel_tool_calls" not in self.option_names

    def ignored_options(self, request: Any) -> list[str]:
        """The generation options a request set that a served chain does not take (reported in the
        ``x-plait-ignored-options`` response header rather than refused, since many chat clients
        always send ``temperature``)."""
        if self.is_chat_model:
            return []
        return [wire for wire in _OPTION_FIELDS if wire not in ("tools", "tool_choice")
                and getattr(request, wire, None) is not None and _OPTION_FIELDS[wire] not in self.option_names]

    def _chain_options(self, request: Any) -> dict[str, Any]:
        options = {_OPTION_FIELDS[w]: getattr(request, w) for w in _CHAIN_MODEL_FIELDS
                   if getattr(request, w, None) is not None and _OPTION_FIELDS[w] in self.option_names}
        return self._checked(options)

    def _checked(self, options: dict[str, Any]) -> dict[str, Any]:
        """The model's own check of the options: its messages are plait's, written for the caller."""
        if options and self.model is not None:
            try:
                self.model.validate_options(dict(options))
            except ValueError as e:
                raise APIError(400, str(e)) from None
        return options

    def _options(self, request: Any) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for wire, name in _OPTION_FIELDS.items():
            value = getattr(request, wire, None)
            if value is None:
                continue
            if wire == "response_format" and value.get("type") == "text":
                continue  # OpenAI's default: plain text, what every model gives anyway
            if wire == "parallel_tool_calls" and name not in self.option_names:
                continue  # False is enforced by the server (one_call)
            if name not in self.option_names:
                raise APIError(400, f"The served model does not support '{wire}'. It accepts: "
                                    f"{', '.join(sorted(self.option_names)) or 'no options'}.", param=wire)
            options[name] = value
        choice = options.get("tool_choice")
        if isinstance(choice, dict):  # OpenAI's {"type": "function", "function": {"name": ...}}
            options["tool_choice"] = (choice.get("function") or {}).get("name") or choice.get("type")
        return self._checked(options)
