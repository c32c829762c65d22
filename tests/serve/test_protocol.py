"""OpenAI protocol fidelity (issue 17, section 2): what real clients send is accepted, or refused clearly."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
import openai
import pytest

from plait.chains.rag import RAGChain
from plait.chat_model import ChatOptions
from plait.fake import FakeChatModel
from plait.messages import AssistantMessage, ToolCall, Usage
from plait.runnable import Lambda
from tests.serve.apps import DOCS, LetterCounts

USER = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": f, "description": f"Tool {f}.",
                                           "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}
         for f in ("alpha", "beta")]


class Recording(FakeChatModel):
    """Records the options of each call; ends its stream with its reply's own usage (when it has one)."""

    def __init__(self, replies: Any, **kw: Any) -> None:
        super().__init__(replies, **kw)
        self.seen: list[dict[str, Any]] = []

    def _generate(self, messages, options):
        self.seen.append(options)
        return super()._generate(messages, options)

    def _chunks(self, msg):
        chunks = super()._chunks(msg)
        return chunks[:-1] + [chunks[-1].model_copy(update={"usage": msg.usage})] if msg.usage else chunks


class TopKOptions(ChatOptions):
    top_k: int | None = None
    parallel_tool_calls: bool | None = None


class TopKModel(Recording):
    Options = TopKOptions


def post(server, body: dict[str, Any], path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(server.url + path, json=body)


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


two_calls = AssistantMessage(content="", finish_reason="tool_calls", tool_calls=[
    ToolCall(id="c1", name="alpha", arguments={"x": "1"}), ToolCall(id="c2", name="beta", arguments={"x": "2"})])


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls_false_means_at_most_one_call(serve, stream):
    model = Recording([two_calls])
    server = serve(model)
    calls = _calls(client(server), stream, parallel_tool_calls=False)
    assert [c["name"] for c in calls] == ["alpha"]  # the model cannot be told: the server keeps the first
    assert _calls(client(server), stream, parallel_tool_calls=True) == _calls(client(server), stream)
    assert len(_calls(client(server), stream)) == 2


def test_parallel_tool_calls_is_passed_to_a_model_that_takes_it(serve):
    model = TopKModel([two_calls])
    server = serve(model)
    r = client(server).chat.completions.create(model="fake", messages=USER, tools=TOOLS, parallel_tool_calls=False)
    assert model.seen[-1]["parallel_tool_calls"] is False
    assert len(r.choices[0].message.tool_calls) == 2  # this fake ignores it: the model's own business


def _calls(c: openai.OpenAI, stream: bool, **kw: Any) -> list[dict[str, Any]]:
    if not stream:
        msg = c.chat.completions.create(model="fake", messages=USER, tools=TOOLS, **kw).choices[0].message
        return [{"name": t.function.name, "args": json.loads(t.function.arguments)} for t in msg.tool_calls or []]
    calls: dict[int, dict[str, Any]] = {}
    for chunk in c.chat.completions.create(model="fake", messages=USER, tools=TOOLS, stream=True, **kw):
        for d in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(d.index, {"name": "", "args": ""})
            call["name"] += d.function.name or ""
            call["args"] += d.function.arguments or ""
    return [{"name": c["name"], "args": json.loads(c["args"])} for _, c in sorted(calls.items())]


def test_response_format_text_top_k_and_favicon(serve):
    model = TopKModel(["plain"])
    server = serve(model)
    r = post(server, {"model": "fake", "messages": USER, "response_format": {"type": "text"}, "top_k": 5})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "plain"
    assert "response_format" not in model.seen[-1] and model.seen[-1]["top_k"] == 5
    plain = serve(FakeChatModel(["x"]))  # a model without top_k says so, and lists what it takes
    err = post(plain, {"model": "fake", "messages": USER, "top_k": 5}).json()["error"]
    assert err["param"] == "top_k" and "temperature" in err["message"]
    r = post(plain, {"model": "fake", "messages": USER, "response_format": {"type": "yaml"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
    fav = httpx.get(server.url + "/favicon.ico")
    assert fav.status_code == 204 and fav.content == b""


@pytest.mark.parametrize("extra, param", [
    ({"top_logprobs": 3}, "top_logprobs"), ({"logprobs": True}, "logprobs"), ({"n": 2}, "n"),
    ({"stream": "yes"}, "stream"), ({"logprobs": "true"}, "logprobs"),
])
def test_what_is_not_supported_is_a_clear_400(serve, extra, param):
    server = serve(FakeChatModel(["x"]))
    with pytest.raises(openai.BadRequestError) as info:
        client(server).chat.completions.create(model="fake", messages=USER, extra_body=extra)
    assert info.value.body["param"] == param


class Letters(LetterCounts):
    """Letter embeddings whose tokenizer is known: one token per letter a-z."""

    class _Tokenizer:
        def __len__(self) -> int:
            return 26

        def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
            return "".join(chr(ord("a") + i) for i in ids)

    tokenizer = _Tokenizer()


def test_token_array_embedding_input(serve):
    server = serve(Letters())
    c = client(server)
    by_text = c.embeddings.create(model="letters", input=["abc", "zz"]).data
    by_ids = c.embeddings.create(model="letters", input=[[0, 1, 2], [25, 25]]).data
    assert [d.embedding for d in by_ids] == [d.embedding for d in by_text]
    one = c.embeddings.create(model="letters", input=[0, 1, 2]).data
    assert one[0].embedding == by_text[0].embedding
    with pytest.raises(openai.BadRequestError, match="outside the model's vocabulary") as info:
        c.embeddings.create(model="letters", input=[[0, 99]])
    assert info.value.body["param"] == "input"
    unknown = serve(LetterCounts())
    with pytest.raises(openai.BadRequestError, match="tokenizer") as info:
        client(unknown).embeddings.create(model="letters", input=[[1, 2, 3]])
    assert info.value.body["param"] == "input"


def test_served_rag_passes_options_to_its_model_and_reports_its_usage(serve):
    usage = Usage(prompt_tokens=120, completion_tokens=9, total_tokens=129)
    model = Recording([AssistantMessage(content="Steps compose with the | operator [1].", usage=usage)])
    server = serve(RAGChain(Lambda(lambda q: DOCS), model), name="rag")
    body = {"model": "rag", "messages": [{"role": "user", "content": "How?"}], "max_tokens": 9, "temperature": 0.2,
            "presence_penalty": 0.5}
    r = post(server, body)
    assert model.seen[-1] == {"max_tokens": 9, "temperature": 0.2}
    assert r.headers["x-plait-ignored-options"] == "presence_penalty"  # the fake model has no such option
    whole = r.json()
    assert whole["usage"] == {"prompt_tokens": 120, "completion_tokens": 9, "total_tokens": 129}
    assert whole["choices"][0]["finish_reason"] == "length"  # the model used all of max_tokens
    with httpx.stream("POST", server.url + "/v1/chat/completions",
                      json={**body, "stream": True, "stream_options": {"include_usage": True}}) as s:
        events = [json.loads(e[6:]) for e in s.read().decode().split("\n\n") if e.startswith("data: {")]
    assert events[-1]["usage"] == whole["usage"]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]) == \
        whole["choices"][0]["message"]["content"]
    err = post(server, {**body, "temperature": 1.5, "max_tokens": 0})
    assert err.status_code == 400


def test_served_rag_without_model_usage_estimates_the_same_in_stream_and_not(serve):
    server = serve(RAGChain(Lambda(lambda q: DOCS), FakeChatModel(["Steps compose with | [1]."])), name="rag")
    body = {"model": "rag", "messages": [{"role": "user", "content": "How?"}]}
    whole = client(server).chat.completions.create(**body).usage
    chunks = list(client(server).chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == whole.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.prompt_tokens


def test_langserve_request_shape(serve):
    server = serve(FakeChatModel(["One two."]))
    config = {"tags": ["t"], "metadata": {"user": "u"}, "run_name": "x"}
    r = post(server, {"input": "hi", "config": config, "kwargs": {"stop": ["two"]}}, "/invoke")
    assert r.status_code == 200 and r.json()["output"]["content"] == "One "
    assert r.json()["metadata"]["run_id"]
    r = post(server, {"inputs": ["a", "b"], "config": [config, config], "kwargs": {}}, "/batch")
    assert [o["content"] for o in r.json()["output"]] == ["One two.", "One two."]
    assert len(r.json()["metadata"]["run_ids"]) == 2
    with httpx.stream("POST", server.url + "/stream", json={"input": "hi", "config": {}, "kwargs": {}}) as s:
        raw = s.read().decode()
    assert raw.startswith("event: data") and raw.rstrip().endswith("event: end\ndata: {}")
    r = post(server, {"input": "hi", "options": {"stop": ["x"]}, "kwargs": {"stop": ["y"]}}, "/invoke")
    assert r.status_code == 400 and r.json()["error"]["param"] == "kwargs"
