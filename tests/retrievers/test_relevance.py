"""The relevance gate: a retriever that answers only when a second retriever finds something close."""

from __future__ import annotations

from plait.chains.rag import RAGChain
from plait.fake import FakeChatModel
from plait.messages import Document
from plait.retrievers.base import Retriever
from plait.retrievers.relevance import RelevanceGate
from plait.runnable import Lambda

DOCS = [Document(content=f"passage {i}", id=f"p{i}", score=1.0 - i / 10, metadata={"n": i}) for i in range(3)]


def gate(q):
    return [Document(content="x", score=0.8 if "store" in q else 0.1, metadata={"n": 1})]


def test_relevance_gate_blocks_queries_with_no_close_match():
    gated = RelevanceGate(lambda q: list(DOCS), gate, min_score=0.3)
    assert isinstance(gated, Retriever)
    assert len(gated.invoke("which store?")) == 3
    assert gated.invoke("poems about the sea") == []
    assert gated.best_score("which store?") == 0.8 and gated.best_score("sea") == 0.1
    model = FakeChatModel(["made up [1]"])
    assert not RAGChain(gated, model).invoke("poems about the sea").grounded and model.calls == []


def test_gate_is_a_retriever_with_k_filter_and_threshold():
    gated = RelevanceGate(Lambda(lambda q: list(DOCS)), gate, min_score=0.3)
    assert [d.id for d in gated.invoke("store", k=2)] == ["p0", "p1"]
    assert [d.id for d in gated.invoke("store", filter={"n": {"$gte": 1}})] == ["p1", "p2"]
    assert [d.id for d in gated.invoke("store", score_threshold=0.95)] == ["p0"]
    # the query's filter applies to the gate too: nothing close among n == 5
    assert gated.invoke("store", filter={"n": 5}) == []
    assert RelevanceGate(lambda q: list(DOCS), gate, 0.3, k=1).invoke("store")[0].id == "p0"


def test_old_import_path_still_works():
    from plait.chains.rag import RelevanceGate as Old

    assert Old is RelevanceGate
