"""Interop with the real langchain-core: both directions, streaming and async through the boundary."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core")

from langchain_core import messages as lcm  # noqa: E402
from langchain_core.documents import Document as LCDocument  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.output_parsers import StrOutputParser as LCStrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate as LCChatPromptTemplate  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402

from plait.chains.rag import RAGChain  # noqa: E402
from plait.fake import FakeChatModel, tool_call  # noqa: E402
from plait.interop.langchain import (  # noqa: E402
    from_langchain,
    from_lc_chunk,
    from_lc_document,
    from_lc_message,
    to_langchain,
    to_lc_chunk,
    to_lc_document,
    to_lc_message,
)
from plait.messages import (  # noqa: E402
    AssistantChunk,
    AssistantMessage,
    Document,
    SystemMessage,
    ToolCallChunk,
    ToolMessage,
    Usage,
    UserMessage,
)
from plait.parsers import StrOutputParser  # noqa: E402
from plait.prompts import ChatPromptTemplate  # noqa: E402
from plait.runnable import Lambda  # noqa: E402

MESSAGES = [
    SystemMessage(content="Be brief.", name="sys"),
    UserMessage(content="Weather in Paris?", name="ada"),
    AssistantMessage(content="", tool_calls=[tool_call("weather", {"city": "Paris"}, id="c1").tool_calls[0]],
                     usage=Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15),
                     finish_reason="tool_calls", model="gpt-x", id="msg-1"),
    ToolMessage(content="22C", tool_call_id="c1", name="weather"),
    AssistantMessage(content="It is 22C."),
]


def test_messages_round_trip_losslessly():
    for m in MESSAGES:
        assert from_lc_message(to_lc_message(m)) == m
    lc_ai = to_lc_message(MESSAGES[2])
    assert isinstance(lc_ai, lcm.AIMessage) and lc_ai.tool_calls[0]["args"] == {"city": "Paris"}
    assert lc_ai.usage_metadata["total_tokens"] == 15
    for m in [lcm.HumanMessage(content="hi", id="h1"), lcm.AIMessage(content="yo", id="a1")]:
        back = to_lc_message(from_lc_message(m))
        assert back.content == m.content and type(back) is type(m)


def test_chunks_and_documents_round_trip():
    chunk = AssistantChunk(content="Hel", tool_call_chunks=[ToolCallChunk(index=0, id="c", name="f", arguments='{"a"')],
                           usage=Usage(completion_tokens=1, total_tokens=1), finish_reason="stop", model="m", id="x")
    assert from_lc_chunk(to_lc_chunk(chunk)) == chunk
    doc = Document(content="text", metadata={"source": "a.pdf", "page": 2, "start": 5, "end": 9}, id="d1", score=0.7)
    assert from_lc_document(to_lc_document(doc)) == doc
    lc_doc = LCDocument(page_content="x", metadata={"source": "s"}, id="i")
    assert to_lc_document(from_lc_document(lc_doc)) == lc_doc


def test_plait_model_inside_a_langchain_chain_streams():
    model = to_langchain(FakeChatModel(["Paris is the capital."]))
    chain = LCChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")]) | model | LCStrOutputParser()
    assert chain.invoke({"q": "Capital?"}) == "Paris is the capital."
    tokens = list(chain.stream({"q": "Capital?"}))
    assert tokens[:4] == ["Paris", " is", " the", " capital."]
    msg = model.invoke([lcm.HumanMessage(content="hi")])
    assert isinstance(msg, lcm.AIMessage) and msg.content == "Paris is the capital."


async def test_plait_chain_inside_langchain_async():
    plait_chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | FakeChatModel(["one two three"]) | StrOutputParser()
    lc_chain = RunnableLambda(lambda x: {"q": x}) | to_langchain(plait_chain) | RunnableLambda(str.upper)
    assert await lc_chain.ainvoke("count") == "ONE TWO THREE"
    chunks = [c async for c in to_langchain(plait_chain).astream({"q": "count"})]
    assert chunks == ["one", " two", " three"]


def test_plait_retriever_as_langchain_retriever():
    docs = [Document(content="Chroma stores vectors.", metadata={"source": "s.md"}, score=0.9)]
    retriever = to_langchain(Lambda(lambda q: docs), as_retriever=True)
    out = retriever.invoke("vectors")
    assert out[0].page_content == "Chroma stores vectors." and out[0].metadata["source"] == "s.md"


def test_langchain_chat_model_inside_a_plait_chain_streams():
    lc_model = GenericFakeChatModel(messages=iter(["Bonjour le monde", "again"]))
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | from_langchain(lc_model) | StrOutputParser()
    tokens = list(chain.stream({"q": "Say hello in French"}))
    assert "".join(tokens) == "Bonjour le monde" and len(tokens) >= 3
    msg = from_langchain(GenericFakeChatModel(messages=iter(["hi"]))).invoke("x")
    assert isinstance(msg, AssistantMessage) and msg.content == "hi"


async def test_langchain_model_async_stream_in_plait():
    model = from_langchain(GenericFakeChatModel(messages=iter(["a b c"])))
    chunks = [c async for c in model.astream([UserMessage(content="x")])]
    assert all(isinstance(c, AssistantChunk) for c in chunks) and "".join(c.content for c in chunks) == "a b c"


def test_langchain_retriever_and_prompt_inside_plait_rag():
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents([LCDocument(page_content="plait streams tokens through every step.",
                                    metadata={"source": "docs/runnables.md", "start": 0, "end": 40}, id="r1")])
    rag = RAGChain(from_langchain(store.as_retriever(search_kwargs={"k": 1})),
                   FakeChatModel(["Tokens stream through every step [1]."]))
    result = rag.invoke("Does plait stream?")
    assert result.citations[0].source == "docs/runnables.md" and result.citations[0].end == 40
    lc_prompt = from_langchain(LCChatPromptTemplate.from_messages([("human", "Q: {q}")]))
    value = lc_prompt.invoke({"q": "why"})
    assert value.to_messages() == [UserMessage(content="Q: why")]
    out = (lc_prompt | FakeChatModel(["because"]) | StrOutputParser()).invoke({"q": "why"})
    assert out == "because"
