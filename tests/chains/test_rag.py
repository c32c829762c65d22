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
    assert r.answer == "Chroma is the store [2], and steps use pipes [1]." and r.dropped_markers == [7]
    assert r.citations[0].source == "docs/retrieval.pdf"
    assert (r.citations[0].page, r.citations[0].start, r.citations[0].end) == (3, 120, 178)
    assert r.citations[0].label() == "[2] docs/retrieval.pdf, page 3, chars 120-178"
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
    assert total.usage is not None and total.usage.completion_tokens > 0  # the model's usage streams through


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
    # the first passage that overlaps enough, in retrieval order, not the one that overlaps most
    # the passage sharing most of the answer's words, not the first that shares enough; ties: the higher-ranked
    ranked = [Document(content="yellow fruit"), Document(content="bananas are yellow and sweet")]
    assert infer_citations("bananas are yellow", ranked) == [2]
    assert infer_citations("bananas are yellow", ranked, max_citations=2) == [2, 1]
    tied = [Document(content="yellow bananas"), Document(content="bananas, yellow ones")]
    assert infer_citations("bananas are yellow", tied) == [1]
    text = format_passages([Document(content="word " * 500)], max_chars=50)
    assert text.startswith("[1] word") and len(text) < 70 and text.endswith("...")
    long = Document(content="Filler words about rivers. " * 40 + "The magic password is swordfish. " + "More filler. " * 40)
    assert format_passages([long], 60).startswith("[1] Filler words")
    shown = format_passages([long], 60, question="What is the magic password?")
    assert shown.startswith("[1] ... The magic password is swordfish.") and shown.endswith("...")
    assert (RAGAnswer(answer="a") + RAGAnswer(answer="b")).answer == "ab"


LOOP = "It is a framework [1]. It is a framework [1]. It is a framework [1]. It is"


def test_repetition_guard_stops_a_looping_model_but_streams_new_text():
    from plait.chains.rag import Repeats

    chain = RAGChain(retriever(), FakeChatModel([LOOP]))
    chunks = [c.answer for c in chain.stream("What is plait?") if c.answer]
    assert "".join(chunks) == "It is a framework [1]."
    assert chain.invoke("q").citations[0].number == 1
    g = Repeats()
    assert g.feed("The cat. The") == ("The cat.", False)   # "The" could start a repeat: held
    assert g.feed(" dog") == (" The dog", False)            # it did not: released
    assert g.feed(". The cat.") == (".", True)
    marks = Repeats()  # citation numbers aside: the demo's '# [1]. # [2]. # [3]. ...' repeats from the second
    assert marks.feed(" # [1].") == (" # [1].", False) and marks.feed(" # [2].")[1]
    assert Repeats().feed("It is [1]. It is [2].") == ("It is [1].", True)
    no_guard = RAGChain(retriever(), FakeChatModel([LOOP]), stop_repeats=False).invoke("q")
    assert no_guard.answer.count("framework") == 3


async def test_repetition_guard_is_a_stream_step_that_stops_the_model():
    from plait.chains.rag import RepetitionGuard

    model = FakeChatModel([LOOP])
    chain = model | RepetitionGuard()
    pieces = [c.content for c in chain.stream("go")]
    assert "".join(pieces) == "It is a framework [1]."
    assert len(pieces) > 3  # streamed, not gathered
    apieces = [c.content async for c in chain.astream("go")]
    assert apieces == pieces
    assert chain.invoke("go").content == "It is a framework [1]."
    words = (FakeChatModel(["a b. c d."]) | RepetitionGuard()).stream("go")
    assert [c.content for c in words if c.content] == ["a", " b.", " c", " d."]  # new text is never held back

    class Counted(FakeChatModel):
        def _stream(self, messages, options):
            for chunk in super()._stream(messages, options):
                self.sent += 1
                yield chunk

    counted = Counted([LOOP + " a framework [1]." * 50])
    counted.sent = 0
    list((counted | RepetitionGuard()).stream("go"))
    assert counted.sent < 20  # the model's stream was closed at the repeat, not run to its end


def test_unknown_model_options_raise_when_the_chain_is_made():
    with pytest.raises(ValueError, match="bogus_option"):
        RAGChain(retriever(), FakeChatModel(["x"]), model_options={"bogus_option": 1})
    chain = RAGChain(retriever(), FakeChatModel(["Pipes [1]. More text."]), model_options={"stop": ["."]})
    assert chain.invoke("q").answer == "Pipes [1]"
    assert chain.invoke("q", stop=["]"]).answer == "Pipes [1"  # a call's options are added
    with pytest.raises(ValueError, match="bogus_option"):
        chain.invoke("q", bogus_option=2)


def test_history_is_shown_to_the_model_before_the_passages():
    model = FakeChatModel(["pipes [1]"])
    history = [("user", "I use plait."), ("assistant", "Good to hear.")]
    r = RAGChain(retriever(), model).invoke({"question": "How do steps compose?", "history": history})
    sent = model.calls[0]
    assert [m.role for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1].content == "I use plait." and "Passages:" in sent[-1].content
    assert r.question == "How do steps compose?" and r.citations[0].number == 1
    with pytest.raises(TypeError, match="history"):
        RAGChain(retriever(), model).invoke({"question": "q", "history": "not a list"})


def test_tracing_shows_each_step_of_the_chain():
    from plait import tracing

    class Names(tracing.Tracer):
        def __init__(self):
            self.runs = []

        def on_end(self, run):
            self.runs.append(run)

    names = Names()
    chain = RAGChain(retriever(), FakeChatModel(["Steps compose with pipes [1]."]))
    with tracing.tracing(names):
        answer = chain.invoke("How?")
    assert answer.citations[0].number == 1
    by_id = {r.run_id: r for r in names.runs}
    [root] = [r for r in names.runs if r.parent_id is None]
    assert root.name == "RAGChain"

    def ancestors(run):
        while run.parent_id is not None:
            run = by_id[run.parent_id]
            yield run.name

    seen = {r.name: list(ancestors(r)) for r in names.runs}
    for step in ("retrieve", "sources", "generate", "ChatPromptTemplate", "RepetitionGuard", "answer"):
        assert step in seen and seen[step][-1] == "RAGChain", (step, sorted(seen))
    model_runs = [n for n in seen if n.startswith("FakeChatModel")]
    assert model_runs and "generate" in seen[model_runs[0]]


def test_source_labels_are_made_in_one_place(tmp_path, monkeypatch):
    from plait.chains.rag import Source

    monkeypatch.chdir(tmp_path)
    inside = Source(number=2, source=str(tmp_path / "docs" / "a.md"), page=4, start=1, end=9)
    assert inside.label() == f"[2] {tmp_path / 'docs' / 'a.md'}, page 4, chars 1-9"
    assert inside.label(relative=True) == "[2] docs/a.md, page 4, chars 1-9"
    assert Source(number=1, id="x1").label(relative=True) == "[1] x1"
    assert Source(number=1).label() == "[1] unknown source"


def test_markers_past_the_last_passage_are_taken_out_as_the_answer_streams():
    model = FakeChatModel(["A: [4] pipes [1, 5]. Chroma [2] [x] [3"])  # streamed word by word
    chain = RAGChain(retriever(DOCS[:3]), model)
    chunks = list(chain.stream("q"))
    streamed = "".join(c.answer for c in chunks)
    assert "[4]" not in streamed and "[5]" not in streamed and "[1]" in streamed and "[x]" in streamed
    assert streamed.endswith("[3")  # an unfinished marker is kept as text
    total = chain.invoke("q")
    assert total.answer == streamed and total.dropped_markers == [4, 5]
    assert [c.number for c in total.citations] == [1, 2] and total.citation_method == "model"


def test_only_invalid_markers_infers_and_says_why():
    chain = RAGChain(retriever(), FakeChatModel(["[4] The embedded store is Chroma, in the data directory."]))
    r = chain.invoke("Where is the store?")
    assert r.dropped_markers == [4] and "[4]" not in r.answer and r.answer.endswith("[2]")
    assert r.citation_method == "inferred" and [c.number for c in r.citations] == [2]
    assert r.citation_note.startswith("the model's only marker [4] named no passage (there are 3; removed from "
                                      "the answer); plait added [2]")
    assert "the most of the 3 passages" in r.citation_note
    nothing = RAGChain(retriever(), FakeChatModel(["[9] quantum chromodynamics"])).invoke("q")
    assert nothing.citations == [] and nothing.citation_method == "none"
    assert "no passage shares enough" in nothing.citation_note
