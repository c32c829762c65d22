"""Conversions between plait values and LangChain values: messages, chunks, documents, prompt values.

Conversions are lossless: ``from_lc_message(to_lc_message(m)) == m`` for every plait message
(tool calls, usage, finish reason, model id included) and ``from_lc_document(to_lc_document(d))
== d`` (plait's ``score``, which LangChain documents lack, travels in ``metadata["_score"]``).

plait messages carry text only: a LangChain message whose content holds an image, audio, video or
file block is refused with an error (text blocks are joined; tool-use and reasoning blocks are
dropped, the tool calls travel in ``tool_calls``).
"""

from __future__ import annotations

from typing import Any

from plait.defaults import require
from plait.messages import (
    AssistantChunk,
    AssistantMessage,
    ChatPromptValue,
    Document,
    Message,
    StringPromptValue,
    SystemMessage,
    ToolCall,
    ToolCallChunk,
    ToolMessage,
    Usage,
    UserMessage,
)

require("langchain_core", "langchain", "langchain-core")

from langchain_core import documents as lc_documents  # noqa: E402
from langchain_core import messages as lc  # noqa: E402
from langchain_core import prompt_values as lc_prompt_values  # noqa: E402

_SCORE = "_score"


# --- messages ---------------------------------------------------------------------------------
# Content blocks that carry no text plait must keep: tool calls travel in ``tool_calls``, reasoning is the
# provider's own (Anthropic thinking, OpenAI reasoning summaries).
_SKIPPED_BLOCKS = {"tool_use", "tool_call", "tool_call_chunk", "server_tool_call", "server_tool_result",
                   "thinking", "redacted_thinking", "reasoning", "non_standard"}


def _text(content: Any) -> str:
    """The text of a LangChain message's content (a string or a list of content blocks)."""
    if isinstance(content, str):
        return content
    parts = []
    for part in content or []:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text", "")))
        elif isinstance(part, dict) and part.get("type") in _SKIPPED_BLOCKS:
            continue
        else:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise ValueError(f"plait chat models take text only; this message has a {kind!r} content block. "
                             "Describe the image or file in text, or use a multimodal LangChain model for it.")
    return "".join(parts)


def _usage_to_lc(usage: Usage | None) -> Any:
    if usage is None:
        return None
    return {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def _usage_from_lc(meta: Any) -> Usage | None:
    if not meta:
        return None
    return Usage(prompt_tokens=meta.get("input_tokens", 0), completion_tokens=meta.get("output_tokens", 0),
                 total_tokens=meta.get("total_tokens", 0))


def _response_metadata(finish_reason: str | None, model: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if finish_reason is not None:
        meta["finish_reason"] = finish_reason
    if model is not None:
        meta["model_name"] = model
    return meta


def to_lc_message(message: Message) -> lc.BaseMessage:
    """A plait message as the LangChain message of the same role."""
    if isinstance(message, SystemMessage):
        return lc.SystemMessage(content=message.content, name=message.name)
    if isinstance(message, UserMessage):
        return lc.HumanMessage(content=message.content, name=message.name)
    if isinstance(message, ToolMessage):
        return lc.ToolMessage(content=message.content, tool_call_id=message.tool_call_id, name=message.name)
    if isinstance(message, AssistantMessage):
        return lc.AIMessage(
            content=message.content, name=message.name, id=message.id,
            tool_calls=[{"name": c.name, "args": c.arguments, "id": c.id, "type": "tool_call"}
                        for c in message.tool_calls],
            usage_metadata=_usage_to_lc(message.usage),
            response_metadata=_response_metadata(message.finish_reason, message.model))
    raise TypeError(f"Cannot convert a {type(message).__name__} to a LangChain message")


def from_lc_message(message: lc.BaseMessage) -> Message:
    """A LangChain message as the plait message of the same role (a chunk becomes a whole message)."""
    content = _text(message.content)
    if isinstance(message, lc.SystemMessage):
        return SystemMessage(content=content, name=message.name)
    if isinstance(message, lc.HumanMessage):
        return UserMessage(content=content, name=message.name)
    if isinstance(message, lc.ToolMessage):
        return ToolMessage(content=content, tool_call_id=message.tool_call_id, name=message.name)
    if isinstance(message, lc.AIMessage):
        meta = message.response_metadata or {}
        return AssistantMessage(
            content=content, name=message.name, id=message.id,
            tool_calls=[ToolCall(id=c.get("id") or "", name=c["name"], arguments=c.get("args") or {})
                        for c in message.tool_calls],
            usage=_usage_from_lc(message.usage_metadata),
            finish_reason=meta.get("finish_reason"), model=meta.get("model_name"))
    if isinstance(message, lc.ChatMessage):
        from plait.messages import message_from

        return message_from({"role": message.role, "content": content})
    raise TypeError(f"Cannot convert a LangChain {type(message).__name__} to a plait message")


def to_lc_chunk(chunk: AssistantChunk) -> lc.AIMessageChunk:
    return lc.AIMessageChunk(
        content=chunk.content, id=chunk.id,
        tool_call_chunks=[{"name": c.name, "args": c.arguments, "id": c.id, "index": c.index,
                           "type": "tool_call_chunk"} for c in chunk.tool_call_chunks],
        usage_metadata=_usage_to_lc(chunk.usage),
        response_metadata=_response_metadata(chunk.finish_reason, chunk.model))


def from_lc_chunk(chunk: lc.AIMessageChunk) -> AssistantChunk:
    meta = chunk.response_metadata or {}
    return AssistantChunk(
        content=_text(chunk.content), id=chunk.id,
        tool_call_chunks=[ToolCallChunk(index=c.get("index") or 0, id=c.get("id"), name=c.get("name"),
                                        arguments=c.get("args") or "") for c in chunk.tool_call_chunks],
        usage=_usage_from_lc(chunk.usage_metadata),
        finish_reason=meta.get("finish_reason"), model=meta.get("model_name"))


# --- documents --------------------------------------------------------------------------------
def to_lc_document(doc: Document) -> lc_documents.Document:
    metadata = dict(doc.metadata)
    if doc.score is not None:
        metadata[_SCORE] = doc.score
    return lc_documents.Document(page_content=doc.content, metadata=metadata, id=doc.id)


def from_lc_document(doc: lc_documents.Document) -> Document:
    metadata = dict(doc.metadata)
    score = metadata.pop(_SCORE, None)
    return Document(content=doc.page_content, metadata=metadata, id=doc.id, score=score)


# --- any value --------------------------------------------------------------------------------
def to_lc(value: Any) -> Any:
    """Convert plait values (messages, chunks, documents, prompt values) inside any structure."""
    if isinstance(value, AssistantChunk):
        return to_lc_chunk(value)
    if isinstance(value, Message):
        return to_lc_message(value)
    if isinstance(value, Document):
        return to_lc_document(value)
    if isinstance(value, ChatPromptValue):
        return lc_prompt_values.ChatPromptValue(messages=[to_lc_message(m) for m in value.messages])
    if isinstance(value, StringPromptValue):
        return lc_prompt_values.StringPromptValue(text=value.text)
    if isinstance(value, list):
        return [to_lc(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_lc(v) for v in value)
    if isinstance(value, dict):
        return {k: to_lc(v) for k, v in value.items()}
    return value


def from_lc(value: Any) -> Any:
    """Convert LangChain values (messages, chunks, documents, prompt values) inside any structure."""
    if isinstance(value, lc.AIMessageChunk):
        return from_lc_chunk(value)
    if isinstance(value, lc.BaseMessage):
        return from_lc_message(value)
    if isinstance(value, lc_documents.Document):
        return from_lc_document(value)
    if isinstance(value, lc_prompt_values.ChatPromptValue):
        return ChatPromptValue(messages=[from_lc_message(m) for m in value.messages])  # type: ignore[misc]
    if isinstance(value, lc_prompt_values.StringPromptValue):
        return StringPromptValue(text=value.text)
    if isinstance(value, list):
        return [from_lc(v) for v in value]
    if isinstance(value, tuple):
        return tuple(from_lc(v) for v in value)
    if isinstance(value, dict):
        return {k: from_lc(v) for k, v in value.items()}
    return value
