"""The LangChain classes' own behaviour beyond LangChain's suites: what reaches the plait model, the
errors, ``k``, hybrid search through ``as_retriever``, serialization, ``to_langchain`` / ``from_langchain``."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core import messages as lcm  # noqa: E402
from langchain_core.documents import Document as LCDocument  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.load import dumpd, load  # noqa: E402
from langchain_core.tools import tool as lc_tool  # noqa: E402
from langchain_core.vectorstores import VectorStoreRetriever  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from plait.fake import FakeChatModel, tool_call  # noqa: E402
from plait.interop.langchain import (  # noqa: E402
    LangChainEmbeddings,
    PlaitChatModel,
    PlaitEmbeddings,
    PlaitRetriever,
    PlaitRunnable,
    PlaitVectorStore,
    from_langchain,
    to_langchain,
)
from plait.messages import AssistantMessage, Document, Message  # noqa: E402
from plait.parsers import StrOutputParser  # noqa: E402
from plait.retrievers.chroma import ChromaStore  # noqa: E402
from plait.tools import tool  # noqa: E402


class RecordingModel(FakeChatModel):
    """A scripted plait model that records the options each call reached it with (native tools and JSON)."""

    supports_json_schema = True

    def __init__(self, replies: Any, **options: Any) -> None:
        super().__init__(replies, **options)
        self.options: list[dict[str, Any]] = []

    def _generate(self, messages: list[Message], options: dict[str, Any]) -> AssistantMessage:
        self.options.append(options)
        return super()._generate(messages, options)


class Joke(BaseModel):
    """A joke."""

    setup: str
    punchline: str


@tool
def get_weather(city: str) -> str:
    """Weather of a city.

    Args:
        city: the city.
    """
    return "sunny"


@lc_tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


# --- the chat model ------------------------------------------------------------------------------
def test_options_reach_the_plait_model_and_stop_per_call_wins():
    plait = RecordingModel(["Hello there you"])
    llm = PlaitChatModel(model=plait, temperature=0.2, max_tokens=7, stop=["x"], seed=3)
    msg = llm.invoke("hi", stop=["you"])
    assert msg.content == "Hello there "
    assert plait.options[-1] == {"temperature": 0.2, "max_tokens": 7, "stop": ["you"], "seed": 3}
    assert llm._get_ls_params(stop=["you"]) == {"ls_provider": "plait", "ls_model_name": "fake", "ls_model_type": "chat",
                                               "ls_temperature": 0.2, "ls_max_tokens": 7, "ls_stop": ["you"]}


def test_unknown_options_and_misplaced_settings_fail_at_construction():
    with pytest.raises(ValueError, match="frobnicate"):
        PlaitChatModel(model=FakeChatModel(["x"]), frobnicate=1)
    with pytest.raises(ValueError, match="base_url is for 'openai:MODEL'"):
        PlaitChatModel(model="local", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="Unknown chat model spec"):
        PlaitChatModel(model="hub:thing")
    with pytest.raises(ValueError, match="model_kwargs"):
        PlaitChatModel(model=FakeChatModel(["x"]), seed=1, model_kwargs={"seed": 2})


def test_stream_names_the_model_once_and_ends_with_a_last_chunk():
    plait = FakeChatModel(["one two three"])
    chunks = list(PlaitChatModel(model=plait).stream("count"))
    assert [c.content for c in chunks[:3]] == ["one", " two", " three"]
    assert chunks[-1].chunk_position == "last"
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert full.content == "one two three" and full.response_metadata["model_name"] == "fake"
    assert full.usage_metadata["output_tokens"] == 3


def test_bind_tools_sends_plait_and_langchain_tools_and_maps_tool_choice():
    plait = RecordingModel([tool_call("get_weather", {"city": "Paris"}, id="c1")])
    llm = PlaitChatModel(model=plait)
    msg = llm.bind_tools([get_weather, add], tool_choice="any").invoke("Weather in Paris?")
    assert msg.tool_calls == [{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1", "type": "tool_call"}]
    sent = plait.options[-1]
    assert sent["tool_choice"] == "required"
    assert [t.name for t in sent["tools"]] == ["get_weather", "add"]
    assert sent["tools"][1].parameters["required"] == ["a", "b"]
    llm.bind_tools([add], tool_choice={"type": "function", "function": {"name": "add"}}).invoke("1+2")
    assert plait.options[-1]["tool_choice"] == "add"
    with pytest.raises(ValueError, match="names no bound tool"):
        llm.bind_tools([add], tool_choice="multiply").invoke("1+2")


def test_streamed_tool_calls_add_up_to_the_call():
    plait = FakeChatModel([tool_call("add", {"a": 1, "b": 2}, id="c9")])
    full = None
    for chunk in PlaitChatModel(model=plait).bind_tools([add]).stream("1+2"):
        full = chunk if full is None else full + chunk
    assert full.tool_calls == [{"name": "add", "args": {"a": 1, "b": 2}, "id": "c9", "type": "tool_call"}]


def test_tool_history_reaches_plait_as_plait_messages():
    plait = RecordingModel(["It is 3."])
    PlaitChatModel(model=plait).bind_tools([add]).invoke([
        lcm.HumanMessage("1+2?"),
        lcm.AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1", "type": "tool_call"}]),
        lcm.ToolMessage("3", tool_call_id="c1", name="add")])
    roles = [m.role for m in plait.calls[-1]]
    assert roles == ["user", "assistant", "tool"] and plait.calls[-1][1].tool_calls[0].arguments == {"a": 1, "b": 2}


def test_image_content_is_refused_with_a_clear_error():
    image = lcm.HumanMessage([{"type": "text", "text": "What is this?"},
                              {"type": "image", "base64": "AAAA", "mime_type": "image/png"}])
    with pytest.raises(ValueError, match="text only.*'image'"):
        PlaitChatModel(model=FakeChatModel(["x"])).invoke([image])


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_structured_output_methods(method):
    reply = (tool_call("Joke", {"setup": "Why?", "punchline": "Because."}) if method == "function_calling"
             else '{"setup": "Why?", "punchline": "Because."}')
    plait = RecordingModel([reply])
    joke = PlaitChatModel(model=plait).with_structured_output(Joke, method=method).invoke("A joke")
    assert joke == Joke(setup="Why?", punchline="Because.")
    sent = plait.options[-1]
    if method == "json_schema":
        spec = sent["response_format"]["json_schema"]
        assert spec["name"] == "Joke" and spec["schema"]["required"] == ["setup", "punchline"]
    elif method == "function_calling":
        assert sent["tool_choice"] == "Joke" and sent["tools"][0].name == "Joke"
    else:
        assert sent["response_format"] == {"type": "json_object"}


def test_structured_output_dict_schema_and_include_raw():
    plait = FakeChatModel(['{"setup": "Why?"}', "not json"])
    llm = PlaitChatModel(model=plait)
    schema = Joke.model_json_schema()
    assert llm.with_structured_output(schema).invoke("A joke") == {"setup": "Why?"}
    out = llm.with_structured_output(Joke, include_raw=True).invoke("A joke")
    assert out["parsed"] is None and out["raw"].content == "not json" and out["parsing_error"] is not None
    with pytest.raises(ValueError, match="Unknown structured-output method"):
        llm.with_structured_output(Joke, method="json_prompt")


@pytest.mark.filterwarnings("ignore:The function `load` is in beta")
def test_serialization_round_trips_with_the_class_allowed():
    llm = PlaitChatModel(model="openai:m", base_url="http://127.0.0.1:9/v1", api_key="sk-hidden-1", temperature=0.5,
                         top_p=0.9)
    data = dumpd(llm)
    assert "sk-hidden-1" not in json.dumps(data) and data["kwargs"]["model_kwargs"] == {"top_p": 0.9}
    back = load(data, valid_namespaces=["plait"], allowed_objects=[PlaitChatModel], secrets_map={"OPENAI_API_KEY": "s2"})
    assert isinstance(back, PlaitChatModel) and back.asdict() == llm.asdict()
    assert back.api_key.get_secret_value() == "s2" and back.model_kwargs == {"top_p": 0.9}


def test_local_models_are_shared_by_spec():
    a, b = PlaitChatModel(model="local"), PlaitChatModel(model="local", temperature=1.0)
    assert a.plait_model is b.plait_model and b.plait_model.default_options == {}


# --- embeddings, store, retriever ----------------------------------------------------------------
def test_from_langchain_embeddings_feed_a_plait_store():
    emb = from_langchain(DeterministicFakeEmbedding(size=8))
    assert isinstance(emb, LangChainEmbeddings) and len(emb.embed_query("x")) == 8
    store = ChromaStore.in_memory(f"fake-{uuid.uuid4().hex[:8]}", embeddings=emb)
    store.upsert([Document(content="Cats purr.", id="c")])
    assert store.similarity_search("Cats purr.", k=1)[0].id == "c"
    plait_emb = PlaitEmbeddings(model=emb)
    assert from_langchain(plait_emb) is emb  # unwrapped, not wrapped twice


@pytest.fixture
def pets() -> Any:
    store = PlaitVectorStore(collection_name=f"pets-{uuid.uuid4().hex[:8]}", embedding=DeterministicFakeEmbedding(size=16))
    store.add_documents([LCDocument(page_content=t, metadata={"kind": k}) for t, k in [
        ("Cats purr when content.", "cat"), ("Dogs bark at strangers.", "dog"), ("Kittens purr too.", "cat")]],
        ids=["c1", "d1", "c2"])
    yield store
    store.delete_collection()


def test_as_retriever_search_types(pets):
    assert isinstance(pets.as_retriever(), VectorStoreRetriever)
    for search_type in ("hybrid", "bm25"):
        retriever = pets.as_retriever(search_type=search_type, search_kwargs={"k": 2, "filter": {"kind": "cat"}})
        assert isinstance(retriever, PlaitRetriever)
        docs = retriever.invoke("purr")
        assert {d.id for d in docs} == {"c1", "c2"} and all(d.metadata["_score"] is not None for d in docs)
        assert len(retriever.invoke("purr", k=1)) == 1
    assert [d.id for d in pets.as_retriever(search_type="bm25").invoke("bark", filter={"kind": "dog"})] == ["d1"]


def test_retriever_arguments_are_checked(pets):
    with pytest.raises(ValueError, match="exactly one of"):
        PlaitRetriever(k=2)
    with pytest.raises(ValueError, match="Unknown search_type"):
        PlaitRetriever(vectorstore=pets, search_type="fuzzy")
    with pytest.raises(TypeError, match="Unknown retriever option"):
        PlaitRetriever(vectorstore=pets).invoke("purr", depth=3)
    with pytest.raises(ValueError, match="k must be at least 1"):
        PlaitRetriever(vectorstore=pets).invoke("purr", k=0)


def test_store_scores_delete_and_from_texts(pets):
    scored = pets.similarity_search_with_score("Cats purr when content.", k=3)
    assert scored[0][0].id == "c1" and scored[0][1] == pytest.approx(1.0, abs=1e-4)
    assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)
    assert pets.similarity_search_with_relevance_scores("Cats purr when content.", k=1)[0][1] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="delete_collection"):
        pets.delete()
    pets.delete(filter={"kind": "dog"})
    assert sorted(d.id for d in pets.get_by_ids(["c1", "d1", "c2"])) == ["c1", "c2"]
    other = PlaitVectorStore.from_texts(["a b", "c d"], DeterministicFakeEmbedding(size=4), ids=["x", "y"])
    try:
        assert [d.id for d in other.similarity_search("a b", k=1)] == ["x"]
    finally:
        other.delete_collection()


def test_to_langchain_picks_the_matching_class(pets):
    plait_emb = LangChainEmbeddings(DeterministicFakeEmbedding(size=16))
    assert isinstance(to_langchain(FakeChatModel(["x"])), PlaitChatModel)
    assert isinstance(to_langchain(plait_emb), PlaitEmbeddings)
    wrapped = to_langchain(pets.store)
    assert isinstance(wrapped, PlaitVectorStore) and wrapped.store is pets.store
    assert {d.id for d in wrapped.get_by_ids(["c1"])} == {"c1"}
    from plait.retrievers.bm25 import BM25Retriever

    retriever = to_langchain(BM25Retriever(pets.store.lexical_index, k=3))
    assert isinstance(retriever, PlaitRetriever) and len(retriever.invoke("purr", k=1)) == 1
    assert isinstance(to_langchain(StrOutputParser()), PlaitRunnable)
    with pytest.raises(TypeError, match="to_langchain takes"):
        to_langchain(object())


def test_n_replies_come_back_as_n_generations() -> None:
    """ChatOpenAI's ``n``: the local model makes the replies in one batched decode, ``generate`` returns all."""
    from langchain_core.messages import HumanMessage

    llm = PlaitChatModel(model="local", n=2, temperature=1.0, seed=3, max_tokens=8)
    result = llm.generate([[HumanMessage("Name a colour.")]])
    replies = result.generations[0]
    assert len(replies) == 2 and all(g.message.content for g in replies)
    again = asyncio.run(llm.agenerate([[HumanMessage("Name a colour.")]])).generations[0]
    assert [g.message.content for g in again] == [g.message.content for g in replies]  # seeded: reproducible
    assert len(llm.generate([[HumanMessage("Hi")]], n=1).generations[0]) == 1  # a call's n wins
    with pytest.raises(ValueError, match="n=2 does not stream"):
        list(llm.stream("Hi"))
    with pytest.raises(ValueError, match="n"):  # a backend without n says so
        PlaitChatModel(model=FakeChatModel(["x"]), n=2).generate([[HumanMessage("Hi")]])
