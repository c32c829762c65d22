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
    ToolCall,
    ToolCallChunk,
    Usage,
    UserMessage,
)
from plait.runnable import Runnable
from plait.serve.config import ServeConfig
from plait.serve.convert import image_b64, jsonable, messages_from_openai
from plait.serve.errors import APIError

# Request fields that are generation options, and the option name a ChatModel knows them by.
_OPTION_FIELDS = {
    "temperature": "temperature", "top_p": "top_p", "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens", "stop": "stop", "seed": "seed", "tools": "tools",
    "tool_choice": "tool_choice", "parallel_tool_calls": "parallel_tool_calls",
    "response_format": "response_format", "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty", "logit_bias": "logit_bias",
}
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
    """A whole answer."""

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    sources: list[Any] | None = None
    citations: list[Any] | None = None
    images: list[dict[str, str]] | None = None


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


def reply_from(output: Any) -> Reply:
    """Normalise a served object's whole output (see the module docstring)."""
    if isinstance(output, AssistantChunk):
        output = output.to_message()
    if isinstance(output, AssistantMessage):
        return Reply(content=output.content, tool_calls=list(output.tool_calls), usage=output.usage,
                     finish_reason=output.finish_reason or ("tool_calls" if output.tool_calls else "stop"))
    if isinstance(output, str):
        return Reply(content=output, finish_reason="stop")
    if output is None:
        return Reply(finish_reason="stop")
    if isinstance(output, ImageResult):
        return Reply(content=_image_text(output), images=_images(output), finish_reason="stop")
    mapping = _as_mapping(output)
    if mapping is not None and ("answer" in mapping or "sources" in mapping):
        reply = reply_from(mapping.get("answer"))
        if mapping.get("sources") is not None:
            reply.sources = sources_json(mapping["sources"])
        if mapping.get("citations"):
            reply.citations = sources_json(mapping["citations"])
        if isinstance(mapping.get("usage"), Usage):
            reply.usage = mapping["usage"]
        return reply
    if isinstance(output, list) and output and all(isinstance(d, Document) for d in output):
        return Reply(content="\n\n".join(d.content for d in output), sources=sources_json(output),
                     finish_reason="stop")
    return Reply(content=json.dumps(jsonable(output), ensure_ascii=False), finish_reason="stop")


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
    """The served object seen from ``/v1/chat/completions``: builds its input, runs it, normalises."""

    def __init__(self, runnable: Runnable[Any, Any], config: ServeConfig) -> None:
        from plait.chat_model import ChatModel

        self.runnable = runnable
        self.is_chat_model = isinstance(runnable, ChatModel)
        self.config = config
        self.option_names: set[str] = set(type(runnable).Options.model_fields) if self.is_chat_model else set()  # type: ignore[attr-defined]

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
        if self.config.input_key is None:
            return text, {}
        value: dict[str, Any] = {self.config.input_key: text}
        if self.config.history_key is not None:
            value[self.config.history_key] = messages[:last]
        return value, {}

    def ignored_options(self, request: Any) -> list[str]:
        """The generation options a request set that a served chain does not take (reported in the
        ``x-plait-ignored-options`` response header rather than refused, since many chat clients
        always send ``temperature``)."""
        if self.is_chat_model:
            return []
        return [wire for wire in _OPTION_FIELDS if wire not in ("tools", "tool_choice")
                and getattr(request, wire, None) is not None]

    def _options(self, request: Any) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for wire, name in _OPTION_FIELDS.items():
            value = getattr(request, wire, None)
            if value is None:
                continue
            if name not in self.option_names:
                raise APIError(400, f"The served model does not support '{wire}'. It accepts: "
                                    f"{', '.join(sorted(self.option_names)) or 'no options'}.", param=wire)
            options[name] = value
        choice = options.get("tool_choice")
        if isinstance(choice, dict):  # OpenAI's {"type": "function", "function": {"name": ...}}
            options["tool_choice"] = (choice.get("function") or {}).get("name") or choice.get("type")
        return options

    async def ainvoke(self, value: Any, options: dict[str, Any]) -> Reply:
        return reply_from(await self.runnable.ainvoke(value, **options))
