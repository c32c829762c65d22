# ruff: noqa: F401  (names are re-exported lazily through __getattr__)
"""Retrieval: the Chroma store with its BM25 twin, dense / BM25 / hybrid retrievers, loaders,
splitters and incremental ingestion.

The one-call defaults (the embedded store in ``plait.defaults.chroma_dir()``, the bundled MiniLM,
hybrid retrieval)::

    from plait.retrievers import default_retriever, ingest
    ingest(["docs/"], collection="handbook")
    retriever = default_retriever("handbook", k=4)
    retriever.invoke("How many vacation days do I get?")

Names load on first use, so importing this package pulls in neither chromadb nor torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait.retrievers.base import Retriever, matches
    from plait.retrievers.bm25 import BM25Index, BM25Retriever
    from plait.retrievers.chroma import ChromaStore
    from plait.retrievers.dense import DenseRetriever
    from plait.retrievers.hybrid import HybridRetriever
    from plait.retrievers.indexing import Indexer, IngestReport, Skipped, ingest
    from plait.retrievers.loaders import JSONLLoader, LoadError, iter_files, load_file
    from plait.retrievers.splitters import (
        MarkdownHeaderSplitter,
        RecursiveCharacterSplitter,
        TextSplitter,
        TokenSplitter,
    )

_LAZY = {
    "Retriever": "plait.retrievers.base",
    "matches": "plait.retrievers.base",
    "BM25Index": "plait.retrievers.bm25",
    "BM25Retriever": "plait.retrievers.bm25",
    "ChromaStore": "plait.retrievers.chroma",
    "DenseRetriever": "plait.retrievers.dense",
    "HybridRetriever": "plait.retrievers.hybrid",
    "Indexer": "plait.retrievers.indexing",
    "IngestReport": "plait.retrievers.indexing",
    "Skipped": "plait.retrievers.indexing",
    "ingest": "plait.retrievers.indexing",
    "JSONLLoader": "plait.retrievers.loaders",
    "LoadError": "plait.retrievers.loaders",
    "iter_files": "plait.retrievers.loaders",
    "load_file": "plait.retrievers.loaders",
    "MarkdownHeaderSplitter": "plait.retrievers.splitters",
    "RecursiveCharacterSplitter": "plait.retrievers.splitters",
    "TextSplitter": "plait.retrievers.splitters",
    "TokenSplitter": "plait.retrievers.splitters",
}

__all__ = sorted([*_LAZY, "default_store", "default_retriever"])

_STORES: dict[str, Any] = {}


def default_store(collection: str = "default") -> ChromaStore:
    """The embedded, persistent store for ``collection`` in ``plait.defaults.chroma_dir()``, bundled MiniLM.

    One store object per collection per process (they share the embedding model), so calling this
    again is cheap.
    """
    from plait.retrievers.chroma import ChromaStore

    store = _STORES.get(collection)
    if store is None or store.path is None or store.path != _chroma_dir():
        store = _STORES[collection] = ChromaStore(collection)
    return store


def _chroma_dir() -> Any:
    from plait.defaults import chroma_dir

    return chroma_dir()


def default_retriever(collection: str = "default", *, k: int = 4, **options: Any) -> Retriever:
    """The hybrid retriever (dense + BM25, min-max convex fusion) over :func:`default_store`.

    ``options``: ``filter``, ``score_threshold``, ``fusion`` ("convex" or "rrf"), ``weight``,
    ``normalisation`` ("minmax" or "dbsf"), ``fetch_k``, ``by_document``.
    """
    return default_store(collection).as_retriever("hybrid", k=k, **options)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'plait.retrievers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
