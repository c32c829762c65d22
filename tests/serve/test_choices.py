"""``n`` > 1 through ``plait serve``: the bundled local model gives n choices (whole and streamed) to
the official openai SDK and to plait's own remote client; a served chain refuses ``n`` with a 400."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.serve.apps import rag_chain

pytest.importorskip("torch")

Q = [{"role": "user", "content": "Name a color. Answer in one word."}]
OPTS = {"temperature": 0.9, "seed": 5, "max_tokens": 12}


@pytest.fixture(scope="module")
def local() -> Any:
    from plait.local_models.llm.transformers_chat import TransformersChatModel
    from plait.serve import ServerThread, create_app

    model = TransformersChatModel()
    server = ServerThread(create_app(model, name="local")).start()
    server.model = model
    yield server
    server.stop()


def sdk(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=600)


@pytest.mark.slow  # loads SmolLM2 in the server
@pytest.mark.integration
def test_n_choices_whole_and_streamed(local: Any) -> None:
    client = sdk(local)
    expected = local.model.generate(Q, n=2, **OPTS)  # the same model in this process, the same seeds
    r = client.chat.completions.create(model="local", messages=Q, n=2, **OPTS)
    assert [c.index for c in r.choices] == [0, 1]
    assert [c.message.content for c in r.choices] == [m.content for m in expected]
    assert [c.finish_reason for c in r.choices] == [m.finish_reason for m in expected]
    assert all(c.message.content for c in r.choices)
    # OpenAI's usage: the prompt once, the completion tokens of every choice
    assert r.usage.prompt_tokens == expected[0].usage.prompt_tokens
    assert r.usage.completion_tokens == sum(m.usage.completion_tokens for m in expected)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    chunks = list(client.chat.completions.create(model="local", messages=Q, n=2, stream=True,
                                                 stream_options={"include_usage": True}, **OPTS))
    texts, ends, roles = {0: "", 1: ""}, {0: [], 1: []}, {0: 0, 1: 0}
    for c in chunks[:-1]:
        assert len(c.choices) == 1  # one choice's delta per chunk
        choice = c.choices[0]
        texts[choice.index] += choice.delta.content or ""
        roles[choice.index] += choice.delta.role == "assistant"
        if choice.finish_reason:
            ends[choice.index].append(choice.finish_reason)
    assert [texts[0], texts[1]] == [c.message.content for c in r.choices]
    assert ends == {i: [r.choices[i].finish_reason] for i in (0, 1)} and roles == {0: 1, 1: 1}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == r.usage.completion_tokens


@pytest.mark.slow  # loads SmolLM2 in the server
@pytest.mark.integration
def test_remote_client_passes_n_through(local: Any) -> None:
    from plait.remote.openai_chat import OpenAIChatModel

    remote = OpenAIChatModel("local", base_url=local.url + "/v1", api_key="x", timeout=600, **OPTS)
    local_msgs = local.model.generate(Q, n=3, **OPTS)
    expected = [m.content for m in local_msgs]
    msgs = remote.generate(Q, n=3)
    assert [m.content for m in msgs] == expected
    # the server's usage covers all choices; it rides on choice 0
    assert msgs[0].usage.completion_tokens == sum(m.usage.completion_tokens for m in local_msgs)
    assert msgs[1].usage is None and msgs[2].usage is None
    totals: dict[int, Any] = {}
    for i, chunk in remote.stream_choices(Q, n=3):
        totals[i] = chunk if i not in totals else totals[i] + chunk
    assert [totals[i].content for i in range(3)] == expected
    assert all(totals[i].finish_reason for i in range(3))


def test_a_served_chain_refuses_n(serve: Any) -> None:
    server = serve(rag_chain(), name="rag")
    with pytest.raises(openai.BadRequestError) as info:
        sdk(server).chat.completions.create(model="rag", messages=Q, n=2)
    assert info.value.body["param"] == "n" and "chain" in info.value.body["message"]
    one = sdk(server).chat.completions.create(model="rag", messages=Q, n=1)
    assert len(one.choices) == 1


@pytest.mark.slow  # loads SmolLM2 in the server
@pytest.mark.integration
def test_langchain_openai_n_generations(local: Any) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage

    llm = langchain_openai.ChatOpenAI(model="local", base_url=local.url + "/v1", api_key="x", n=2, max_retries=0,
                                      **OPTS)
    result = llm.generate([[HumanMessage(Q[0]["content"])]])
    assert [g.text for g in result.generations[0]] == [m.content for m in local.model.generate(Q, n=2, **OPTS)]


@pytest.mark.slow  # loads SmolLM2 in the server
@pytest.mark.integration
def test_n_choices_each_follow_the_schema(local: Any) -> None:
    schema = {"type": "object", "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]},
                                               "count": {"type": "integer"}},
              "required": ["color", "count"], "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "Pick", "schema": schema, "strict": True}}
    r = sdk(local).chat.completions.create(model="local", messages=Q, n=3, response_format=fmt, **OPTS)
    assert len(r.choices) == 3
    for c in r.choices:
        value = json.loads(c.message.content)
        assert value["color"] in ("red", "green", "blue") and isinstance(value["count"], int)
