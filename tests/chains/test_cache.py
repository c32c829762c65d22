from __future__ import annotations

import re

import pytest

from plait.chains.cache import Cached, ExactCache, SemanticCache, cached, namespace_of
from plait.fake import FakeChatModel, tool_call
from plait.messages import AssistantChunk, AssistantMessage, SystemMessage, UserMessage
from plait.parsers import StrOutputParser
from plait.prompts import ChatPromptTemplate
from tests.app_support import embeddings  # noqa: F401


class Counting(FakeChatModel):
    """A scripted model whose replies number each real call, so a cache hit is visible."""

    def __init__(self, **options):
        super().__init__(lambda messages: f"answer {len(self.calls)}", **options)


def test_exact_cache_hits_only_the_same_prompt_model_and_options(tmp_path):
    store = ExactCache(tmp_path / "c.db")
    model = Cached(Counting(), store)
    assert model.invoke("hi").content == "answer 1"
    again = model.invoke("hi")
    assert isinstance(again, AssistantMessage) and again.content == "answer 1" and model.hits == 1
    assert model.invoke("hi!").content == "answer 2"                 # another prompt
    assert model.invoke("hi", temperature=0.5).content == "answer 3"  # other call options
    other = Cached(Counting(temperature=0.2), store)                  # other default options
    assert other.invoke("hi").content == "answer 1" and other.misses == 1
    assert Cached(Counting(), ExactCache(tmp_path / "c.db")).invoke("hi").content == "answer 1"  # persisted


def test_models_with_other_ids_never_share(tmp_path):
    class A(Counting):
        model_name = "model-a"

    class B(Counting):
        model_name = "model-b"

    store = ExactCache(tmp_path / "c.db")
    assert namespace_of(A()) != namespace_of(B())
    Cached(A(), store).invoke("q")
    b = Cached(B(), store)
    b.invoke("q")
    assert b.hits == 0
    assert namespace_of(FakeChatModel(["x"])) != namespace_of(FakeChatModel(["y"]))


def test_caches_a_whole_chain_and_streams(tmp_path):
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | Counting() | StrOutputParser()
    c = Cached(chain, ExactCache(tmp_path / "c.db"))
    first = list(c.stream({"q": "a"}))
    assert "".join(first) == "answer 1" and len(first) == 2
    assert list(c.stream({"q": "a"})) == ["answer 1"] and c.hits == 1
    other_prompt = ChatPromptTemplate.from_messages([("user", "Say {q}")]) | Counting() | StrOutputParser()
    assert namespace_of(other_prompt) != namespace_of(chain)


def test_streamed_model_reply_is_stored_as_a_message(tmp_path):
    model = Cached(FakeChatModel([tool_call("add", {"a": 1}), "x"]), ExactCache(tmp_path / "c.db"))
    chunks = list(model.stream("add"))
    assert isinstance(chunks[0], AssistantChunk)
    hit = model.invoke("add")
    assert hit.tool_calls[0].name == "add" and hit.tool_calls[0].arguments == {"a": 1}
    replay = list(model.stream("add"))
    assert len(replay) == 1 and replay[0].to_message().tool_calls == hit.tool_calls


async def test_async(tmp_path):
    model = Cached(Counting(), ExactCache(tmp_path / "c.db"))
    assert (await model.ainvoke("q")).content == "answer 1"
    assert (await model.ainvoke("q")).content == "answer 1"
    assert [c.content async for c in model.astream("q")] == ["answer 1"]


def bag_of_words(text: str) -> list[float]:
    vocab = ["what", "is", "plait", "how", "fast", "chroma", "the", "capital", "france", "paris"]
    words = re.findall(r"[a-z]+", text.lower())
    return [float(words.count(w)) for w in vocab] + [0.01]


def test_semantic_cache_hits_rephrasings_only_within_threshold_and_context(tmp_path):
    sem = SemanticCache(bag_of_words, threshold=0.9, path=tmp_path / "s.db")
    model = Cached(Counting(), sem)
    assert model.invoke("What is plait?").content == "answer 1"
    assert model.invoke("what is plait").content == "answer 1"           # same words: hit
    assert model.invoke("How fast is chroma?").content == "answer 2"     # another question: miss
    sys_a = [SystemMessage(content="Answer in French."), UserMessage(content="What is plait?")]
    assert model.invoke(sys_a).content == "answer 3"                      # other system prompt: miss
    assert Cached(Counting(temperature=0.9), sem).invoke("What is plait?").content == "answer 1"  # other model
    with pytest.raises(ValueError, match="threshold"):
        SemanticCache(bag_of_words, threshold=0)


@pytest.mark.integration
def test_semantic_cache_with_real_minilm(tmp_path, embeddings):  # noqa: F811
    model = cached(Counting(), embeddings=embeddings, threshold=0.9, path=tmp_path / "s.db")
    model.invoke("What is the capital of France?")
    assert model.invoke("what's the capital of France").content == "answer 1"
    assert model.invoke("How do I bake bread?").content == "answer 2"


def test_uncacheable_value_says_what_to_do(tmp_path):
    from plait.runnable import Lambda

    c = Cached(Lambda(lambda x: object()), ExactCache(tmp_path / "c.db"))
    with pytest.raises(TypeError, match="Cannot cache"):
        c.invoke("x")
