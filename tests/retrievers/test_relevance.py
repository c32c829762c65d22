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


def test_a_passage_holding_every_word_of_the_question_opens_the_gate():
    """Dense similarity of a one-sentence answer inside a long chunk is low; the lexical side vouches for it."""
    password = Document(content="Rivers and gardens. The magic passwords are swordfish and marlin.", id="pw", score=2.7)
    other = Document(content="A magic trick with cards.", id="mt", score=1.1)
    lexical = Lambda(lambda q: [password, other] if "magic" in q else [])
    gated = RelevanceGate(lambda q: list(DOCS), gate, min_score=0.3, lexical=lexical)
    assert len(gated.invoke("What is the magic password?")) == 3  # dense 0.1, but every content word is there
    assert gated.why_closed("What is the magic password?") == ""
    assert gated.invoke("What is the magic number of the password?") == []  # 'number' is in no passage
    assert gated.why_closed("How does magic work?") == (
        "the closest passage has similarity 0.10, under 0.3, and no passage holds every word of the question "
        "(magic, work)")
    assert RelevanceGate(lambda q: list(DOCS), gate, 0.3, lexical=False).invoke("What is the magic password?") == []
    assert not gated.lexical_match("What is it?")  # no content words: no lexical evidence


def test_the_gate_takes_the_lexical_side_of_a_hybrid_retriever():
    from plait.retrievers.base import to_retriever
    from plait.retrievers.hybrid import HybridRetriever
    from plait.retrievers.relevance import content_words, covers

    assert content_words("What are the Passwords for pip's cache?") == {"password", "pip", "cache"}
    assert covers("The cache of pip holds a password.", "What are the passwords for pip's cache?")
    assert not covers("anything", "What is it?")
    password = Document(content="The magic password is swordfish.", id="pw", score=2.7)
    lexical = to_retriever(lambda q: [password])
    hybrid = HybridRetriever(to_retriever(lambda q: list(DOCS)), lexical, k=2)
    gated = RelevanceGate(hybrid, gate, 0.3)
    assert gated.lexical is lexical and "pw" in [d.id for d in gated.invoke("the magic password?")]
    assert RelevanceGate(lambda q: [], gate, 0.3).lexical is None
