"""RAGChain composition tests on the scripted model (the real local model is in test_end_to_end.py)."""

from __future__ import annotations

import pytest

from plait.chains.rag import RAGAnswer, RAGChain, cited_numbers, format_passages, infer_citations
from plait.fake import FakeChatModel
from plait.messages import Document
from plait.runnable import Lambda

DOCS = [
    Document(content="plait composes steps with the pipe operator.", id="a",
             metadata={"source": "docs/runnables.md", "page": None, "chunk": 0, "start": 0, "end": 44}, score=0.9),
    Document(content="The embedded store is Chroma, kept in the data directory.", id="b",
             metadata={"source": "docs/retrieval.pdf", "page": 3, "chunk": 2, "start": 120, "end": 178}, score=0.5),
    Document(content="Bananas are yellow.", id="c", metadata={"source": "fruit.txt"}, score=0.1),
]


def retriever(docs=DOCS):
    return Lambda(lambda q: list(docs))


def test_model_citations_map_to_source_page_and_span():
    chain = RAGChain(retriever(), FakeChatModel(["Chroma is the store [2], and steps use pipes [1][7]."]))
    r = chain.invoke("Where is the store?")
    assert [c.number for c in r.citations] == [2, 1]  # [7] names no passage: dropped
    assert r.citations[0].source == "docs/retrieval.pdf"
    assert (r.citations[0].page, r.citations[0].start, r.citations[0].end) == (3, 120, 178)
    assert r.citations[0].label() == "docs/retrieval.pdf, page 3, chars 120-178"
    assert len(r.sources) == 3 and r.citation_method == "model" and r.grounded


def test_prompt_numbers_the_passages_and_holds_the_question():
    model = FakeChatModel(["ok [1]"])
    RAGChain(retriever(), model, k=2).invoke("Which store?")
    user = model.calls[0][-1].content
    assert "[1] plait composes steps" in user and "[2] The embedded store" in user
    assert "Bananas" not in user  # k=2
    assert "Which store?" in user


def test_fallback_infers_citations_when_model_writes_none():
    chain = RAGChain(retriever(), FakeChatModel(["The embedded store is Chroma in the data directory."]))
    r = chain.invoke("Where is the store?")
    assert r.citation_method == "inferred"
    assert [c.number for c in r.citations][0] == 2
    assert r.answer.endswith("[2]")
    off = RAGChain(retriever(), FakeChatModel(["The embedded store is Chroma."]), fallback_citations=False)
    assert off.invoke("x").citations == []


def test_says_it_does_not_know_without_calling_the_model():
    model = FakeChatModel(["invented answer [1]"])
    empty = RAGChain(retriever([]), model).invoke("What is the airspeed of a swallow?")
    assert not empty.grounded and "don't know" in empty.answer and empty.citations == []
    low = RAGChain(retriever(), model, score_threshold=0.95).invoke("anything")
    assert not low.grounded and low.sources == []
    assert model.calls == []


def test_threshold_keeps_relevant_passages_only():
    model = FakeChatModel(["pipes [1]"])
    r = RAGChain(retriever(), model, score_threshold=0.4).invoke("q")
    assert [s.id for s in r.sources] == ["a", "b"]


def test_model_saying_it_does_not_know_cites_nothing():
    r = RAGChain(retriever(), FakeChatModel(["I don't know."])).invoke("q")
    assert not r.grounded and r.citations == []


def test_stream_is_token_by_token_and_adds_up_to_invoke():
    reply = "Steps compose with pipes [1]."
    chain = RAGChain(retriever(), FakeChatModel([reply]))
    chunks = list(chain.stream("How?"))
    assert chunks[0].sources and chunks[0].answer == ""
    tokens = [c.answer for c in chunks if c.answer]
    assert len(tokens) >= 4 and "".join(tokens) == reply
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.answer == chain.invoke("How?").answer
    assert [c.number for c in total.citations] == [1]


async def test_async_matches_sync():
    chain = RAGChain(retriever(), FakeChatModel(["Chroma [2]."]))
    a = await chain.ainvoke({"question": "store?"})
    s = chain.invoke({"question": "store?"})
    assert a.model_dump(exclude={"usage"}) == s.model_dump(exclude={"usage"})
    chunks = [c async for c in chain.astream("store?")]
    assert sum(1 for c in chunks if c.answer) >= 2


def test_composes_in_a_chain_and_rejects_bad_input():
    chain = RAGChain(retriever(), FakeChatModel(["pipes [1]"])) | (lambda r: r.format_sources())
    assert chain.invoke("q") == "[1] docs/runnables.md, chars 0-44"
    with pytest.raises(TypeError, match="question"):
        RAGChain(retriever(), FakeChatModel(["x"])).invoke(42)


def test_helpers():
    assert cited_numbers("a [1, 3] b [3][2] c [9]", 3) == [1, 3, 2]
    assert infer_citations("bananas are yellow", DOCS) == [3]
    assert infer_citations("quantum chromodynamics", DOCS) == []
    text = format_passages([Document(content="word " * 500)], max_chars=50)
    assert text.startswith("[1] word") and len(text) < 70 and text.endswith("...")
    assert (RAGAnswer(answer="a") + RAGAnswer(answer="b")).answer == "ab"


def test_relevance_gate_blocks_queries_with_no_close_match():
    from plait.chains.rag import RelevanceGate

    gate = Lambda(lambda q: [Document(content="x", score=0.8 if "store" in q else 0.1)])
    gated = RelevanceGate(retriever(), gate, min_score=0.3)
    assert len(gated.invoke("which store?")) == 3
    assert gated.invoke("poems about the sea") == []
    model = FakeChatModel(["made up [1]"])
    assert not RAGChain(gated, model).invoke("poems about the sea").grounded and model.calls == []


def test_repetition_guard_stops_a_looping_model_but_streams_new_text():
    from plait.chains.rag import RepetitionGuard

    loop = "It is a framework [1]. It is a framework [1]. It is a framework [1]. It is"
    chain = RAGChain(retriever(), FakeChatModel([loop]))
    chunks = [c.answer for c in chain.stream("What is plait?") if c.answer]
    assert "".join(chunks) == "It is a framework [1]."
    assert chain.invoke("q").citations[0].number == 1
    g = RepetitionGuard()
    assert g.feed("The cat. The") == ("The cat.", False)   # "The" could start a repeat: held
    assert g.feed(" dog") == (" The dog", False)            # it did not: released
    assert g.feed(". The cat.") == (".", True)
    no_guard = RAGChain(retriever(), FakeChatModel([loop]), stop_repeats=False).invoke("q")
    assert no_guard.answer.count("framework") == 3
