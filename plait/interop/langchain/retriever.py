"""plait retrieval as a LangChain ``BaseRetriever``, honouring ``k`` in the constructor and per call.

Two ways to build one:

- ``PlaitRetriever(vectorstore=PlaitVectorStore(...), k=4, search_type="hybrid")``: plait's hybrid
  (dense + BM25 fusion, the default), ``"similarity"`` (dense), ``"mmr"`` or ``"bm25"`` retrieval
  over the store; ``search_kwargs`` holds ``filter``, ``score_threshold`` and the retriever's own
  options (``fusion``, ``weight``, ``fetch_k``, ``lambda_mult``...);
- ``PlaitRetriever(retriever=<plait Retriever>, k=4)``: a retriever you built (any plait Runnable
  from a query to documents works; one that is not a plait ``Retriever`` is cut to ``k``).

``invoke(query, k=1)`` (and ``filter=``, ``score_threshold=``) override the constructor's for
one call. Documents carry plait's score in ``metadata["_score"]``.

Example::

    retriever = PlaitRetriever(vectorstore=store, k=2)
    retriever.invoke("Which animal purrs?")          # 2 documents, best first
    retriever.invoke("Which animal purrs?", k=1)     # 1 document
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import Field, PrivateAttr, model_validator

from plait.interop.langchain.convert import to_lc_document
from plait.interop.langchain.vectorstore import PlaitVectorStore
from plait.retrievers.base import Retriever
from plait.retrievers.chroma import ChromaStore
from plait.runnable import Runnable

SEARCH_TYPES = ("hybrid", "similarity", "mmr", "bm25")
_CALL_OPTIONS = ("filter", "score_threshold")


def _store_retriever(store: ChromaStore, search_type: str, k: int, options: dict[str, Any]) -> Retriever:
    """The plait retriever of ``search_type`` over ``store`` (opens nothing until the first query)."""
    from plait.retrievers.bm25 import BM25Retriever
    from plait.retrievers.dense import DenseRetriever
    from plait.retrievers.hybrid import HybridRetriever

    if search_type == "hybrid":
        return HybridRetriever(DenseRetriever(store), BM25Retriever(store.lexical_index), k=k, **options)
    if search_type == "bm25":
        return BM25Retriever(store.lexical_index, k=k, **options)
    return DenseRetriever(store, k=k, search="mmr" if search_type == "mmr" else "similarity", **options)


class PlaitRetriever(BaseRetriever):
    """plait retrieval (over a ``PlaitVectorStore``, or a plait retriever) as a LangChain retriever.

    See the module docstring. Example::

        PlaitRetriever(vectorstore=store, k=3, search_type="bm25").invoke("vitamin D")
    """

    vectorstore: PlaitVectorStore | None = None
    retriever: Any = None
    k: int = 4
    search_type: str = "hybrid"
    search_kwargs: dict[str, Any] = Field(default_factory=dict)

    _plait: Runnable[Any, Any] = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> PlaitRetriever:
        if (self.vectorstore is None) == (self.retriever is None):
            raise ValueError("Give PlaitRetriever exactly one of vectorstore=PlaitVectorStore(...) or "
                             "retriever=<plait Retriever>")
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.retriever is not None:
            if not isinstance(self.retriever, Runnable):
                raise TypeError(f"retriever must be a plait Retriever (or Runnable), not "
                                f"{type(self.retriever).__name__}; wrap a LangChain retriever with from_langchain")
            if self.search_kwargs:
                raise ValueError("search_kwargs go with vectorstore=; configure a plait retriever when building it")
            self._plait = self.retriever
            return self
        if self.search_type not in SEARCH_TYPES:
            raise ValueError(f"Unknown search_type {self.search_type!r}: use one of {', '.join(SEARCH_TYPES)}")
        assert self.vectorstore is not None
        self._plait = _store_retriever(self.vectorstore.store, self.search_type, self.k, self.search_kwargs)
        return self

    def _call(self, kwargs: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        unknown = set(kwargs) - {"k", *_CALL_OPTIONS}
        if unknown:
            raise TypeError(f"Unknown retriever option(s) {sorted(unknown)}; use k, filter or score_threshold")
        k = int(kwargs.get("k", self.k))
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        options = {key: kwargs[key] for key in _CALL_OPTIONS if key in kwargs}
        if options and not isinstance(self._plait, Retriever):
            raise TypeError(f"{type(self._plait).__name__} is not a plait Retriever: it takes no {sorted(options)}")
        return k, options

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[LCDocument]:
        k, options = self._call(kwargs)
        if isinstance(self._plait, Retriever):
            docs = self._plait.invoke(query, k=k, **options)
        else:
            docs = self._plait.invoke(query)
        return [to_lc_document(d) for d in docs[:k]]

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       **kwargs: Any) -> list[LCDocument]:
        k, options = self._call(kwargs)
        if isinstance(self._plait, Retriever):
            docs = await self._plait.ainvoke(query, k=k, **options)
        else:
            docs = await self._plait.ainvoke(query)
        return [to_lc_document(d) for d in docs[:k]]
