"""``logprobs`` / ``top_logprobs`` through ``plait serve`` with the bundled local model: the official
openai SDK (whole and streamed) and plait's own remote client reading them back."""

from __future__ import annotations

import math
from typing import Any

import openai
import pytest

from plait.runnable import Lambda

pytest.importorskip("torch")

Q = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
TOL = 1e-4  # stream vs whole: the same computation in one process; a margin for kernel order


@pytest.fixture(scope="module")
def local_server() -> Any:
    from plait.local_models.llm.transformers_chat import TransformersChatModel
    from plait.serve import ServerThread, create_app

    server = ServerThread(create_app(TransformersChatModel(), name="local")).start()
    yield server
    server.stop()


def sdk(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=600)


def check(tokens: list[Any], content: str, k: int) -> None:
    assert tokens and "".join(t.token for t in tokens) == content
    for t in tokens:
        assert t.logprob <= 0 and bytes(t.bytes).decode() == t.token
        values = [c.logprob for c in t.top_logprobs]
        assert len(values) == k and values == sorted(values, reverse=True)
        assert sum(math.exp(v) for v in values) <= 1 + 1e-5
        assert t.top_logprobs[0].token == t.token  # greedy: the chosen token is the most likely
        assert t.top_logprobs[0].logprob == pytest.approx(t.logprob, abs=1e-6)


@pytest.mark.slow  # loads SmolLM2 in the server
@pytest.mark.integration
def test_openai_sdk_whole_and_streamed(local_server):
    client = sdk(local_server)
    r = client.chat.completions.create(model="local", messages=Q, max_tokens=20, temperature=0,
                                       logprobs=True, top_logprobs=3)
    whole = r.choices[0].logprobs.content
    check(whole, r.choices[0].message.content, 3)
    chunks = list(client.chat.completions.create(model="local", messages=Q, max_tokens=20, temperature=0,
                                                 logprobs=True, top_logprobs=3, stream=True))
    streamed = []
    for c in chunks:
        if c.choices and c.choices[0].logprobs is not None:
            # each chunk's tokens make up exactly its delta
            assert "".join(t.token for t in c.choices[0].logprobs.content) == c.choices[0].delta.content
            streamed += c.choices[0].logprobs.content
    assert [t.token for t in streamed] == [t.token for t in whole]
    assert [t.logprob for t in streamed] == pytest.approx([t.logprob for t in whole], abs=TOL)
    plain = client.chat.completions.create(model="local", messages=Q, max_tokens=3, temperature=0)
    assert plain.choices[0].logprobs is None


@pytest.mark.slow  # loads SmolLM2 in the server
@pytest.mark.integration
def test_remote_client_reads_them_back(local_server):
    from plait.remote.openai_chat import OpenAIChatModel

    remote = OpenAIChatModel("local", base_url=local_server.url + "/v1", api_key="x", timeout=600,
                             temperature=0, max_tokens=12, logprobs=True, top_logprobs=2)
    msg = remote.invoke("Name a color.")
    check(msg.logprobs, msg.content, 2)
    chunks = list(remote.stream("Name a color."))
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert [t.token for t in total.logprobs] == [t.token for t in msg.logprobs]
    assert [t.logprob for t in total.logprobs] == pytest.approx([t.logprob for t in msg.logprobs], abs=TOL)
    assert remote.invoke("Name a color.", logprobs=False).logprobs is None


def test_a_served_chain_refuses_logprobs(serve):
    server = serve(Lambda(lambda text: f"echo {text}"), name="echo")
    with pytest.raises(openai.BadRequestError) as info:
        sdk(server).chat.completions.create(model="echo", messages=Q, logprobs=True)
    assert info.value.body["param"] == "logprobs" and "logprobs" in info.value.body["message"]
