from __future__ import annotations

from plait.chains.conversational import ConversationalRAG
from plait.chains.history import SQLiteChatHistory
from plait.fake import FakeChatModel
from plait.messages import Document
from plait.runnable import Lambda

DOCS = {"chroma": Document(content="Chroma is the embedded vector store.", metadata={"source": "store.md"}),
        "bm25": Document(content="BM25 scores words.", metadata={"source": "bm25.md"})}


def test_follow_up_is_rewritten_then_retrieved_and_persisted(tmp_path):
    queries: list[str] = []

    def retrieve(q):
        queries.append(q)
        return [d for key, d in DOCS.items() if key in q.lower()]

    def reply(messages):
        last = messages[-1].content
        if "Rewritten question:" in last:
            return "Where does Chroma keep its data?"
        return "In the data directory [1]."

    store = SQLiteChatHistory(tmp_path / "h.db")
    chain = ConversationalRAG(Lambda(retrieve), FakeChatModel(reply), history=store)
    first = chain.invoke({"question": "What is Chroma?", "session_id": "s"})
    assert queries == ["What is Chroma?"]  # no history: no rewrite
    assert first.citations[0].source == "store.md"
    # a new object over the same file: the conversation survives a restart
    chain2 = ConversationalRAG(Lambda(retrieve), FakeChatModel(reply), history=SQLiteChatHistory(tmp_path / "h.db"))
    second = chain2.invoke({"question": "Where does it keep its data?", "session_id": "s"})
    assert queries[-1] == "Where does Chroma keep its data?"
    assert second.question == "Where does Chroma keep its data?"
    assert [m.content for m in store.messages("s")] == [
        "What is Chroma?", "In the data directory [1].", "Where does it keep its data?", "In the data directory [1]."]


def test_explicit_history_and_streaming():
    model = FakeChatModel(["BM25 scoring", "It scores words [1]."])
    chain = ConversationalRAG(Lambda(lambda q: [DOCS["bm25"]] if "BM25" in q else []), model)
    chunks = list(chain.stream({"question": "how does it score?",
                                "history": [("user", "Tell me about BM25"), ("assistant", "A ranking function.")]}))
    assert "".join(c.answer for c in chunks) == "It scores words [1]."
    assert "Tell me about BM25" in model.calls[0][-1].content
