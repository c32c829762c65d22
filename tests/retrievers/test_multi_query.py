"""Multi-query retrieval: the model's query variants, searched concurrently, fused by RRF."""

from __future__ import annotations

import pytest

from plait.fake import FakeChatModel
from plait.messages import Document
from plait.retrievers.base import Retriever
from plait.retrievers.fusion import fuse_documents
from plait.retrievers.multi_query import MultiQueryRetriever, parse_variants
from plait.runnable import Lambda


def d(i, **meta):
    return Document(content=f"doc {i}", id=str(i), metadata=meta)


def test_rrf_rewards_documents_found_by_several_queries():
    fused = fuse_documents([[d(1), d(2), d(3)], [d(3), d(4)], [d(3), d(2)]], fusion="rrf", rrf_k=60)
    assert [x.id for x in fused][:2] == ["3", "2"]
    assert fused[0].score == pytest.approx(1 / 63 + 1 / 61 + 1 / 61)
    assert len(fuse_documents([[d(1), d(2)]], fusion="rrf", k=1)) == 1
    # documents without ids are told apart by content and metadata (the id a store would give them)
    a, b = Document(content="same"), Document(content="other")
    fused = fuse_documents([[a, b], [Document(content="same")]], fusion="rrf")
    assert [x.content for x in fused] == ["same", "other"] and fused[0].id is None


def test_parse_variants_cleans_numbering():
    assert parse_variants("1. alpha\n- beta\n\n\"gamma\"\nQ\nalpha", 5, "q") == ["alpha", "beta", "gamma"]


def test_variants_are_searched_and_fused():
    index = {"stream": [d(1), d(2)], "tokens": [d(2), d(3)], "chunks": [d(2), d(4)]}
    seen = []

    def search(q):
        seen.append(q)
        return [doc for word, docs in index.items() if word in q for doc in docs]

    model = FakeChatModel(["1. how are tokens sent\n2. chunks of output"])
    r = MultiQueryRetriever(Lambda(search), model, n_variants=2, k=3)
    assert isinstance(r, Retriever)
    out = r.invoke("how to stream")
    assert sorted(seen) == sorted(["how to stream", "how are tokens sent", "chunks of output"])
    assert out[0].id == "2" and len(out) == 3
    assert [x.id for x in r.invoke("how to stream", k=1)] == ["2"]  # a retriever: k per call
    assert "Write 2 different search queries" in model.calls[0][0].content


def test_filter_and_threshold_apply_to_the_fused_documents():
    docs = [d(1, lang="en"), d(2, lang="fr"), d(3, lang="en")]
    r = MultiQueryRetriever(lambda q: docs, FakeChatModel(["other words"]), n_variants=1, k=5)
    assert [x.id for x in r.invoke("q", filter={"lang": "en"})] == ["1", "3"]
    assert [x.id for x in r.invoke("q", score_threshold=2 / 62.5)] == ["1", "2"]  # both lists: 2/61, 2/62, 2/63


async def test_async_variants_and_fusion():
    model = FakeChatModel(["other words"])
    r = MultiQueryRetriever(Lambda(lambda q: [d(len(q))]), model, n_variants=1, k=5)
    out = await r.ainvoke("query")
    assert sorted(x.id for x in out) == ["11", "5"]


def test_old_import_path_still_works():
    from plait.chains.multi_query import MultiQueryRetriever as Old

    assert Old is MultiQueryRetriever
