"""The one-call defaults, the light import, and the ingest API end to end on the default store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plait.defaults import chroma_dir


def test_import_is_light():
    code = ("import sys, plait.retrievers, plait.embeddings, plait.retrievers.base;"
            "heavy = [m for m in ('chromadb', 'torch', 'sentence_transformers', 'bm25s', 'pypdf') if m in sys.modules];"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "[]"


def test_store_constructors_are_cheap():
    from plait.retrievers.chroma import ChromaStore

    store = ChromaStore("cheap-one")
    assert store._client is None and store._collection is None and store._embeddings is None
    with pytest.raises(ValueError, match="Collection name"):
        ChromaStore("x")


@pytest.mark.integration
def test_making_retrievers_opens_nothing(tmp_path, embeddings):
    from plait.retrievers.chroma import ChromaStore
    from plait.retrievers.relevance import RelevanceGate

    folder = tmp_path / "not-yet"
    store = ChromaStore("lazy", path=folder, embeddings=embeddings)
    retrievers = [store.as_retriever(kind, k=2) for kind in ("hybrid", "dense", "mmr", "bm25")]
    retrievers.append(RelevanceGate(store.as_retriever(), store.as_retriever("dense", k=1), 0.3))
    assert not folder.exists() and store._client is None and store._collection is None
    assert retrievers[0].invoke("anything") == []  # the first query opens the store, which is empty
    assert folder.exists() and store._client is not None
    # warm_up does what the first query would, through every layer (chain -> gate -> hybrid -> store)
    from plait.chains.rag import RAGChain
    from plait.fake import FakeChatModel

    other = ChromaStore("warm", path=tmp_path / "warm", embeddings=embeddings)
    RAGChain(RelevanceGate(other.as_retriever(), other.as_retriever("dense", k=1), 0.3),
             FakeChatModel(["x"])).warm_up()
    assert other._collection is not None and other._synced
    with pytest.raises(ValueError, match="bm25=False"):
        ChromaStore("no-lexical", path=folder, bm25=False).as_retriever("hybrid")


def test_clear_raises_when_the_server_cannot_be_reached():
    from plait.retrievers.chroma import ChromaStore
    from tests.retrievers.conftest import free_port

    store = ChromaStore.http("gone", host="127.0.0.1", port=free_port(), bm25=False)
    with pytest.raises(ConnectionError, match="Cannot reach the Chroma server"):
        store.clear()  # not mistaken for "the collection did not exist"


@pytest.mark.integration
def test_ingest_and_default_retriever(tmp_path, embeddings):
    from plait.retrievers import default_retriever, default_store, ingest

    assert Path(os.environ["PLAIT_HOME"]) in chroma_dir().parents  # tests never touch the user's store
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# Holidays\nEmployees get 25 vacation days a year.\n",
                                             encoding="utf-8")
    (tmp_path / "notes" / "b.txt").write_text("The cafeteria opens at 8 am.", encoding="utf-8")
    store = default_store("handbook")
    assert store is default_store("handbook") and store.path == chroma_dir()
    assert store._collection is None
    report = ingest(tmp_path / "notes", collection="handbook", progress=False)
    assert report.files_added == 2 and not report.skipped
    assert store._collection is not None  # ingest wrote through the default store, not a second one
    docs = default_retriever("handbook", k=1).invoke("How many days off do I get?")
    assert docs[0].metadata["source"] == str((tmp_path / "notes" / "a.md").resolve())
    assert docs[0].metadata["section"] == "Holidays"
    meta = docs[0].metadata
    assert {"chunk", "start", "end", "format"} <= set(meta) and meta["chunk"] == 0
    sidecar = chroma_dir() / "plait" / "handbook.sqlite"
    assert sidecar.exists()  # BM25 and the record beside the collection
    assert ingest(tmp_path / "notes", collection="handbook", progress=False).files_unchanged == 2
