"""Any plait Runnable inside LangChain, any LangChain Runnable (or embeddings) inside plait.

:func:`to_langchain` picks the LangChain class that fits: a plait chat model becomes a
:class:`~plait.interop.langchain.chat_model.PlaitChatModel`, embeddings a
:class:`~plait.interop.langchain.embeddings.PlaitEmbeddings`, a ``ChromaStore`` a
:class:`~plait.interop.langchain.vectorstore.PlaitVectorStore`, a retriever a
:class:`~plait.interop.langchain.retriever.PlaitRetriever`; anything else (a prompt, a parser, a
whole chain) a generic :class:`PlaitRunnable`. :func:`from_langchain` goes the other way.
``invoke``, ``ainvoke``, ``stream`` and ``astream`` all cross the boundary: tokens stream through
as they are produced, in both directions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.embeddings import Embeddings as LCEmbeddings
from langchain_core.runnables import Runnable as LCRunnable
from langchain_core.runnables import RunnableConfig

from plait.chat_model import ChatModel
from plait.embeddings import Embeddings
from plait.interop.langchain.convert import from_lc, to_lc
from plait.retrievers.base import Retriever
from plait.runnable import Runnable


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


def to_langchain(obj: Any, *, as_retriever: bool = False) -> Any:
    """The LangChain object for a plait one.

    A :class:`~plait.chat_model.ChatModel` gives a ``PlaitChatModel`` (a ``BaseChatModel``),
    :class:`~plait.embeddings.Embeddings` a ``PlaitEmbeddings``, a
    :class:`~plait.retrievers.chroma.ChromaStore` a ``PlaitVectorStore``, a
    :class:`~plait.retrievers.base.Retriever` (or any Runnable with ``as_retriever=True``) a
    ``PlaitRetriever`` (a ``BaseRetriever``); any other Runnable a generic LangChain Runnable.
    """
    from plait.interop.langchain.chat_model import PlaitChatModel
    from plait.interop.langchain.embeddings import PlaitEmbeddings
    from plait.interop.langchain.retriever import PlaitRetriever
    from plait.interop.langchain.vectorstore import PlaitVectorStore
    from plait.retrievers.chroma import ChromaStore

    if isinstance(obj, ChatModel):
        return PlaitChatModel(model=obj)
    if isinstance(obj, Embeddings):
        return PlaitEmbeddings(model=obj)
    if isinstance(obj, ChromaStore):
        return PlaitVectorStore.from_store(obj)
    if isinstance(obj, Retriever) or (as_retriever and isinstance(obj, Runnable)):
        return PlaitRetriever(retriever=obj)
    if isinstance(obj, Runnable):
        return PlaitRunnable(obj)
    raise TypeError(f"to_langchain takes a plait Runnable, embeddings or ChromaStore, got {type(obj).__name__}")


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


class LangChainEmbeddings(Embeddings):
    """LangChain ``Embeddings`` as plait :class:`~plait.embeddings.Embeddings` (made by :func:`from_langchain`),
    so a ``ChromaStore`` or a plait splitter can use them."""

    def __init__(self, embeddings: LCEmbeddings) -> None:
        self.embeddings = embeddings

    def __repr__(self) -> str:
        return f"LangChainEmbeddings({type(self.embeddings).__name__})"

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [[float(x) for x in v] for v in self.embeddings.embed_documents(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.embeddings.embed_query(text)]

    async def aembed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [[float(x) for x in v] for v in await self.embeddings.aembed_documents(list(texts))]

    async def aembed_query(self, text: str) -> list[float]:
        return [float(x) for x in await self.embeddings.aembed_query(text)]


def from_langchain(obj: Any) -> Any:
    """A LangChain Runnable (chat model, retriever, prompt, chain) or ``Embeddings`` for use in plait."""
    if isinstance(obj, LCEmbeddings):
        from plait.interop.langchain.embeddings import PlaitEmbeddings

        return obj.plait_embeddings if isinstance(obj, PlaitEmbeddings) else LangChainEmbeddings(obj)
    if not isinstance(obj, LCRunnable):
        raise TypeError(f"from_langchain takes a langchain_core Runnable or Embeddings, got {type(obj).__name__}")
    return LangChainRunnable(obj)

