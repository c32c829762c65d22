"""The chains with the real local model (SmolLM2-135M) and the real store over the project's docs."""

from __future__ import annotations

import pytest

from plait.chains.rag import RAGChain
from plait.retrievers.relevance import RelevanceGate
from tests.app_support import docs_store, embeddings, local_model  # noqa: F401

pytestmark = pytest.mark.integration


def test_rag_over_the_docs_cites_real_sources(local_model, docs_store):  # noqa: F811
    chain = RAGChain(docs_store.as_retriever(k=3), local_model, k=3, model_options={"max_tokens": 48})
    chunks = list(chain.stream("Which local chat model does plait use by default?"))
    assert sum(1 for c in chunks if c.answer) >= 3  # streamed token by token
    result = chunks[0]
    for c in chunks[1:]:
        result = result + c
    assert result.answer.strip() and len(result.sources) == 3
    assert all(s.source and s.source.endswith(".md") and s.end > s.start for s in result.sources)
    assert result.citations, f"no citation, even inferred: {result.answer!r}"
    assert result.citation_method in ("model", "inferred")
    # Usage is not asserted here: when RepetitionGuard cuts a looping answer it closes the model's
    # stream before its last chunk (the one with usage). Usage streaming through RAG is tested in
    # tests/chains/test_rag.py with a model that finishes.


def test_off_topic_question_gets_i_dont_know(local_model, docs_store):  # noqa: F811
    gate = RelevanceGate(docs_store.as_retriever(k=3), docs_store.as_retriever("dense", k=1), 0.3)
    chain = RAGChain(gate, local_model)
    # (not the egg question of the docs' examples: the docs hold its words, so the lexical side would let it in)
    question = "How do I season a cast iron pan?"
    assert gate.best_score(question) < 0.3 and gate.why_closed(question)
    result = chain.invoke(question)
    assert not result.grounded and result.citations == [] and "don't know" in result.answer
    assert gate.best_score("Where does plait keep the embedded Chroma store?") >= 0.3


def test_history_is_trimmed_by_the_local_models_own_tokens(local_model, tmp_path):  # noqa: F811
    from plait.chains.history import SQLiteChatHistory, WithHistory, context_window_of, token_counter_for
    from plait.messages import SystemMessage, UserMessage

    count = token_counter_for(local_model)
    text = "The quick brown fox jumps over the lazy dog. " * 4
    exact = count([UserMessage(content=text)])
    assert exact == len(local_model._engine.render([UserMessage(content=text)]))
    assert context_window_of(local_model) >= 2048
    store = SQLiteChatHistory(tmp_path / "h.db")
    store.add("s", [("user", text), ("assistant", "ok")] * 20)
    bot = WithHistory(local_model, store, system="Be brief.", max_tokens=300)
    _, _, sent = bot._prepare({"session_id": "s", "input": "And now?"})
    assert isinstance(sent[0], SystemMessage) and sent[-1].content == "And now?"
    assert count(sent) <= 300 < count([SystemMessage(content="Be brief."), *store.messages("s")])
