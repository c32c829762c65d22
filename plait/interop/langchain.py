"""LangChain interop: use plait steps inside LangChain chains and LangChain runnables inside plait.

- :func:`to_langchain` wraps a plait Runnable as a ``langchain_core`` Runnable (a retriever as a
  ``BaseRetriever`` with ``as_retriever=True``). Inputs are converted from LangChain types,
  outputs to LangChain types: an AssistantMessage becomes an ``AIMessage``, a streamed
  AssistantChunk an ``AIMessageChunk``, a Document a LangChain ``Document``.
- :func:`from_langchain` wraps any LangChain Runnable (chat model, retriever, prompt, chain) as a
  plait Runnable, converting the other way.
- ``invoke``, ``ainvoke``, ``stream`` and ``astream`` all cross the boundary: tokens stream
  through as they are produced, in both directions.

Conversions are lossless: ``from_lc_message(to_lc_message(m)) == m`` for every plait message
(tool calls, usage, finish reason, model id included) and ``from_lc_document(to_lc_document(d))
== d`` (plait's ``score``, which LangChain documents lack, travels in ``metadata["_score"]``).

Example::

    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from plait.interop.langchain import to_langchain

    lc_chain = ChatPromptTemplate.from_template("{q}") | to_langchain(plait_model) | StrOutputParser()
    for token in lc_chain.stream({"q": "hi"}):
        print(token, end="")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
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
from plait.runnable import Runnable

require("langchain_core", "langchain", "langchain-core")

from langchain_core import documents as lc_documents  # noqa: E402
from langchain_core import messages as lc  # noqa: E402
from langchain_core import prompt_values as lc_prompt_values  # noqa: E402
from langchain_core.callbacks import CallbackManagerForRetrieverRun  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.runnables import Runnable as LCRunnable  # noqa: E402
from langchain_core.runnables import RunnableConfig  # noqa: E402

_SCORE = "_score"


# --- messages ---------------------------------------------------------------------------------
def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for part in content or []:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text", "")))
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


# --- plait inside LangChain -------------------------------------------------------------------
class PlaitRunnable(LCRunnable[Any, Any]):
    """A plait Runnable as a LangChain Runnable (made by :func:`to_langchain`)."""

    def __init__(self, runnable: Runnable[Any, Any], name: str | None = None) -> None:
        self.runnable = runnable
        self.name = name or runnable.get_name()

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(lambda x: to_lc(self.runnable.invoke(from_lc(x), **kwargs)), input, config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        async def call(x: Any) -> Any:
            return to_lc(await self.runnable.ainvoke(from_lc(x), **kwargs))

        return await self._acall_with_config(call, input, config)

    def _stream(self, inputs: Iterator[Any], **kwargs: Any) -> Iterator[Any]:
        def plait_inputs() -> Iterator[Any]:
            for x in inputs:
                yield from_lc(x)

        for chunk in self.runnable.transform(plait_inputs(), **kwargs):
            yield to_lc(chunk)

    async def _astream(self, inputs: AsyncIterator[Any], **kwargs: Any) -> AsyncIterator[Any]:
        async def plait_inputs() -> AsyncIterator[Any]:
            async for x in inputs:
                yield from_lc(x)

        async for chunk in self.runnable.atransform(plait_inputs(), **kwargs):
            yield to_lc(chunk)

    def transform(self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        yield from self._transform_stream_with_config(input, lambda it: self._stream(it, **kwargs), config)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        yield from self.transform(iter([input]), config, **kwargs)

    async def atransform(self, input: AsyncIterator[Any], config: RunnableConfig | None = None,
                         **kwargs: Any) -> AsyncIterator[Any]:
        async for chunk in self._atransform_stream_with_config(input, lambda it: self._astream(it, **kwargs),
                                                               config):
            yield chunk

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self.atransform(one(), config, **kwargs):
            yield chunk


class PlaitRetriever(BaseRetriever):
    """A plait retriever (query -> Documents) as a LangChain ``BaseRetriever``."""

    runnable: Any

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[lc_documents.Document]:
        return [to_lc_document(d) for d in self.runnable.invoke(query)]

    async def _aget_relevant_documents(self, query: str, *, run_manager: Any) -> list[lc_documents.Document]:
        return [to_lc_document(d) for d in await self.runnable.ainvoke(query)]


def to_langchain(runnable: Runnable[Any, Any], *, as_retriever: bool = False) -> LCRunnable[Any, Any]:
    """Wrap a plait Runnable for use in LangChain (as a ``BaseRetriever`` with ``as_retriever=True``)."""
    if not isinstance(runnable, Runnable):
        raise TypeError(f"to_langchain takes a plait Runnable, got {type(runnable).__name__}")
    if as_retriever:
        return PlaitRetriever(runnable=runnable)
    return PlaitRunnable(runnable)


# --- LangChain inside plait -------------------------------------------------------------------
class LangChainRunnable(Runnable[Any, Any]):
    """A LangChain Runnable as a plait Runnable (made by :func:`from_langchain`)."""

    def __init__(self, runnable: LCRunnable[Any, Any]) -> None:
        self.runnable = runnable
        self.name = getattr(runnable, "name", None) or type(runnable).__name__

    def __repr__(self) -> str:
        return f"LangChainRunnable({self.name})"

    def invoke(self, input: Any, **kwargs: Any) -> Any:
        return from_lc(self.runnable.invoke(to_lc(input), **kwargs))

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        return from_lc(await self.runnable.ainvoke(to_lc(input), **kwargs))

    def stream(self, input: Any, **kwargs: Any) -> Iterator[Any]:
        for chunk in self.runnable.stream(to_lc(input), **kwargs):
            yield from_lc(chunk)

    async def astream(self, input: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for chunk in self.runnable.astream(to_lc(input), **kwargs):
            yield from_lc(chunk)

    def transform(self, inputs: Iterator[Any], **kwargs: Any) -> Iterator[Any]:
        def lc_inputs() -> Iterator[Any]:
            for x in inputs:
                yield to_lc(x)

        for chunk in self.runnable.transform(lc_inputs(), **kwargs):
            yield from_lc(chunk)

    async def atransform(self, inputs: AsyncIterator[Any], **kwargs: Any) -> AsyncIterator[Any]:
        async def lc_inputs() -> AsyncIterator[Any]:
            async for x in inputs:
                yield to_lc(x)

        async for chunk in self.runnable.atransform(lc_inputs(), **kwargs):
            yield from_lc(chunk)


def from_langchain(runnable: LCRunnable[Any, Any]) -> LangChainRunnable:
    """Wrap a LangChain Runnable (chat model, retriever, prompt, chain) for use in plait."""
    if not isinstance(runnable, LCRunnable):
        raise TypeError(f"from_langchain takes a langchain_core Runnable, got {type(runnable).__name__}")
    return LangChainRunnable(runnable)
