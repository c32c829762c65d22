"""Retrievers over a store by kind: what ``store.as_retriever(kind)`` returns.

Kinds: ``"hybrid"`` (default: dense + BM25 fused, :mod:`plait.retrievers.hybrid`), ``"dense"``
(cosine similarity), ``"mmr"`` (dense with maximal marginal relevance) and ``"bm25"`` (lexical).
Making one opens nothing: the store's client, collection and lexical index open on the first query.

Example::

    from plait.retrievers.factory import store_retriever
    retriever = store_retriever(store, "hybrid", k=5, fusion="rrf")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plait.retrievers.base import Filter, Retriever

if TYPE_CHECKING:
    from plait.retrievers.chroma import ChromaStore

KINDS = ("hybrid", "dense", "mmr", "bm25")


def store_retriever(store: ChromaStore, kind: str = "hybrid", *, k: int = 4, filter: Filter | None = None,
                    score_threshold: float | None = None, **options: Any) -> Retriever:
    """A retriever of ``kind`` over ``store``. Extra ``options`` go to the retriever's constructor
    (e.g. ``fusion="rrf"`` for hybrid, ``fetch_k=`` for mmr)."""
    from plait.retrievers.bm25 import BM25Retriever
    from plait.retrievers.dense import DenseRetriever
    from plait.retrievers.hybrid import HybridRetriever

    if kind not in KINDS:
        raise ValueError(f"Unknown retriever kind {kind!r}; use {', '.join(KINDS)}")
    if kind in ("hybrid", "bm25") and store.bm25 is None:
        raise ValueError(f"{store!r} was opened with bm25=False; a {kind} retriever needs its lexical index")
    common: dict[str, Any] = {"k": k, "filter": filter, "score_threshold": score_threshold}
    if kind == "hybrid":
        return HybridRetriever(DenseRetriever(store), BM25Retriever(store.lexical_index), **common, **options)
    if kind == "bm25":
        return BM25Retriever(store.lexical_index, **common, **options)
    return DenseRetriever(store, search="similarity" if kind == "dense" else "mmr", **common, **options)
