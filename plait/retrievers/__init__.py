# ruff: noqa: F401  (names are re-exported lazily through __getattr__)
"""Retrieval: the Chroma store with its lexical (BM25) twin, every retriever (dense, BM25, hybrid, multi-query,
the relevance gate; the contract is in :mod:`plait.retrievers.base`), rank fusion, loaders,
splitters and incremental ingestion.

The one-call defaults (resolved in :mod:`plait.defaults`: the embedded store in
``plait.defaults.chroma_dir()``, the bundled MiniLM, hybrid retrieval)::

    from plait.retrievers import default_retriever, ingest
    ingest(["docs/"], collection="handbook")
    retriever = default_retriever("handbook", k=4)
    retriever.invoke("How many vacation days do I get?")

Names load on first use, so importing this package pulls in neither chromadb nor torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from plait._lazy import lazy_exports

if TYPE_CHECKING:
    from plait.defaults import default_retriever, default_store
    from plait.retrievers.base import Hit, Retriever, matches, to_retriever
    from plait.retrievers.bm25 import BM25Retriever
    from plait.retrievers.chroma import ChromaStore
    from plait.retrievers.dense import DenseRetriever
    from plait.retrievers.factory import store_retriever
    from plait.retrievers.fusion import fuse, fuse_documents
    from plait.retrievers.hybrid import HybridRetriever
    from plait.retrievers.indexing import Indexer, IngestReport, Skipped, ingest
    from plait.retrievers.lexical import LexicalIndex
    from plait.retrievers.loaders import JSONLLoader, LoadError, iter_files, load_file
    from plait.retrievers.multi_query import MultiQueryRetriever
    from plait.retrievers.relevance import RelevanceGate
    from plait.retrievers.splitters import (
        MarkdownHeaderSplitter,
        RecursiveCharacterSplitter,
        TextSplitter,
        TokenSplitter,
    )

_LAZY = {
    "default_retriever": "plait.defaults",
    "default_store": "plait.defaults",
    "Hit": "plait.retrievers.base",
    "Retriever": "plait.retrievers.base",
    "matches": "plait.retrievers.base",
    "to_retriever": "plait.retrievers.base",
    "BM25Retriever": "plait.retrievers.bm25",
    "ChromaStore": "plait.retrievers.chroma",
    "DenseRetriever": "plait.retrievers.dense",
    "store_retriever": "plait.retrievers.factory",
    "fuse": "plait.retrievers.fusion",
    "fuse_documents": "plait.retrievers.fusion",
    "HybridRetriever": "plait.retrievers.hybrid",
    "Indexer": "plait.retrievers.indexing",
    "IngestReport": "plait.retrievers.indexing",
    "Skipped": "plait.retrievers.indexing",
    "ingest": "plait.retrievers.indexing",
    "LexicalIndex": "plait.retrievers.lexical",
    "JSONLLoader": "plait.retrievers.loaders",
    "LoadError": "plait.retrievers.loaders",
    "iter_files": "plait.retrievers.loaders",
    "load_file": "plait.retrievers.loaders",
    "MultiQueryRetriever": "plait.retrievers.multi_query",
    "RelevanceGate": "plait.retrievers.relevance",
    "MarkdownHeaderSplitter": "plait.retrievers.splitters",
    "RecursiveCharacterSplitter": "plait.retrievers.splitters",
    "TextSplitter": "plait.retrievers.splitters",
    "TokenSplitter": "plait.retrievers.splitters",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
