"""Real OpenAI clients against a real server: the official SDK (sync, async, streaming),
LangChain's ChatOpenAI and plait's own OpenAI backend."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from plait.fake import FakeChatModel, tool_call
from plait.messages import AssistantMessage, Usage
from plait.runnable import Lambda
from plait.serve import ServerThread
from tests.serve.apps import rag_chain

USER = [{"role": "user", "content": "Say hello"}]


def client(server: ServerThread, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=kw.pop("api_key", "unused"), max_retries=0, **kw)


def test_sync_completion_matches_model(serve):
    model = FakeChatModel(["Hello there, friend."])
    server = serve(model)
    r = client(server).chat.completions.create(model="fake", messages=USER)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.content == "Hello there, friend."
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 3 and r.usage.total_tokens >= 3
    assert model.calls[0][0].content == "Say hello"  # the model got the OpenAI messages


def test_chat_model_gets_whole_conversation_and_options(serve):
    model = FakeChatModel(["one two. three"])
    server = serve(model)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": [{"type": "text", "text": "Count"}]}]
    r = client(server).chat.completions.create(model="fake", messages=messages, stop=["."])
    assert r.choices[0].message.content == "one two"  # the stop option reached the model
    assert [(m.role, m.content) for m in model.calls[0]] == [
        ("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"), ("user", "Count")]


def test_streaming_chunks_follow_openai_format(serve):
    server = serve(FakeChatModel(["Streaming works fine"]))
    chunks = list(client(server).chat.completions.create(
        model="fake", messages=USER, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == ["Streaming", " works", " fine"]
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)


def test_raw_sse_wire_format(serve):
    server = serve(FakeChatModel(["Hi you"]))
    body = {"model": "fake", "messages": USER, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    first = json.loads(events[0][6:])
    assert first["choices"][0] == {"index": 0, "delta": {"role": "assistant", "content": ""},
                                   "logprobs": None, "finish_reason": None}
    assert "usage" not in first  # only with stream_options.include_usage


async def test_async_client_and_async_stream(serve):
    server = serve(FakeChatModel(["Async reply here"]))
    aclient = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    r = await aclient.chat.completions.create(model="fake", messages=USER)
    assert r.choices[0].message.content == "Async reply here"
    stream = await aclient.chat.completions.create(model="fake", messages=USER, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Async reply here"
    await aclient.close()


def test_tool_calls_plain_and_streamed(serve):
    reply = tool_call("get_weather", {"city": "Paris"}, id="call_42")
    server = serve(FakeChatModel([reply, reply]))
    c = client(server)
    r = c.chat.completions.create(model="fake", messages=USER)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    assert (call.id, call.type, call.function.name) == ("call_42", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    chunks = list(c.chat.completions.create(model="fake", messages=USER, stream=True))
    deltas = [tc for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or []]
    assert deltas[0].id == "call_42" and deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments for d in deltas)) == {"city": "Paris"}
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"


def test_tools_reach_the_model(serve):
    seen = []

    class Recording(FakeChatModel):
        def _generate(self, messages, options):
            seen.append(options)
            return super()._generate(messages, options)

    server = serve(Recording([tool_call("lookup", {"q": "x"})]))
    tools = [{"type": "function", "function": {"name": "lookup", "description": "Look up a word.",
                                               "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    r = client(server).chat.completions.create(model="fake", messages=USER, tools=tools,
                                               tool_choice={"type": "function", "function": {"name": "lookup"}})
    assert r.choices[0].message.tool_calls[0].function.name == "lookup"
    assert [t.name for t in seen[0]["tools"]] == ["lookup"] and seen[0]["tool_choice"] == "lookup"


class CountingModel(FakeChatModel):
    """Reports its reply's own usage at the end of its stream, as a real backend does."""

    def _chunks(self, msg):
        chunks = super()._chunks(msg)
        return chunks[:-1] + [chunks[-1].model_copy(update={"usage": msg.usage})]


def test_model_usage_is_reported_the_same_in_stream_and_not(serve):
    msg = AssistantMessage(content="Counted.", usage=Usage(prompt_tokens=7, completion_tokens=2, total_tokens=9))
    server = serve(CountingModel([msg]))
    r = client(server).chat.completions.create(model="fake", messages=USER)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (7, 2, 9)
    chunks = list(client(server).chat.completions.create(model="fake", messages=USER, stream=True,
                                                         stream_options={"include_usage": True}))
    assert chunks[-1].usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}) == {
        "prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


def test_rag_sources_in_extra_field(serve):
    server = serve(rag_chain(), name="rag")
    c = client(server)
    r = c.chat.completions.create(model="rag", messages=[{"role": "user", "content": "How do steps compose?"}])
    assert r.choices[0].message.content == "Steps compose with the | operator [1]."
    extra = r.model_extra
    assert [s["source"] for s in extra["sources"]] == ["docs/compose.md", "docs/serve.md"]
    assert [s["number"] for s in extra["citations"]] == [1]
    chunks = list(c.chat.completions.create(model="rag", messages=[{"role": "user", "content": "How?"}],
                                            stream=True))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Steps compose with the | operator [1]."
    last = chunks[-1].model_extra
    assert last["sources"][1]["page"] == 2 and last["citations"][0]["source"] == "docs/compose.md"


def test_chain_gets_last_user_text_or_input_key(serve):
    seen = []
    chain = Lambda(lambda x: seen.append(x) or "ok")
    server = serve(chain)
    msgs = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "a"},
            {"role": "user", "content": "second"}]
    assert client(server).chat.completions.create(model="plait", messages=msgs).choices[0].message.content == "ok"
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "plait", "messages": msgs, "temperature": 0.2})
    assert r.headers["x-plait-ignored-options"] == "temperature"  # a chain fixes its own options
    server2 = serve(chain, input_key="question", history_key="history", name="qa")
    client(server2).chat.completions.create(model="qa", messages=msgs)
    assert seen[0] == seen[1] == "second"
    assert seen[2]["question"] == "second" and [m.content for m in seen[2]["history"]] == ["first", "a"]


def test_chain_with_json_output(serve):
    server = serve(Lambda(lambda q: {"length": len(q)}), name="len")
    r = client(server).chat.completions.create(model="len", messages=[{"role": "user", "content": "four"}])
    assert json.loads(r.choices[0].message.content) == {"length": 4}
    chunks = list(client(server).chat.completions.create(model="len", stream=True,
                                                         messages=[{"role": "user", "content": "four"}]))
    assert json.loads("".join(c.choices[0].delta.content or "" for c in chunks if c.choices)) == {"length": 4}


def test_models_list(serve):
    server = serve(FakeChatModel(["x"]), name="my-model")
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["my-model"]
    assert client(server).models.retrieve("my-model").id == "my-model"


def test_langchain_chat_openai(serve):
    from langchain_openai import ChatOpenAI

    server = serve(FakeChatModel(["LangChain talks to plait."]))
    llm = ChatOpenAI(model="fake", base_url=server.url + "/v1", api_key="unused", max_retries=0)
    assert llm.invoke("hi").content == "LangChain talks to plait."
    assert "".join(c.content for c in llm.stream("hi")) == "LangChain talks to plait."


async def test_langchain_chat_openai_async(serve):
    from langchain_openai import ChatOpenAI

    server = serve(FakeChatModel(["Async LangChain."]))
    llm = ChatOpenAI(model="fake", base_url=server.url + "/v1", api_key="unused", max_retries=0)
    assert (await llm.ainvoke("hi")).content == "Async LangChain."
    assert "".join([c.content async for c in llm.astream("hi")]) == "Async LangChain."


def test_plait_openai_backend(serve):
    openai_chat = pytest.importorskip("plait.remote.openai_chat")
    server = serve(FakeChatModel(["plait to plait."]), api_key="k")
    model = openai_chat.OpenAIChatModel("fake", base_url=server.url + "/v1", api_key="k")
    assert model.invoke("hi").content == "plait to plait."
    assert "".join(c.content for c in model.stream("hi")) == "plait to plait."


def test_tool_results_conversation_reaches_model(serve):
    model = FakeChatModel(["It is sunny in Paris."])
    server = serve(model)
    messages = [
        {"role": "developer", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    r = client(server).chat.completions.create(model="fake", messages=messages)
    assert r.choices[0].message.content == "It is sunny in Paris."
    system, user, assistant, tool = model.calls[0]
    assert system.role == "system" and assistant.tool_calls[0].arguments == {"city": "Paris"}
    assert (tool.role, tool.tool_call_id, tool.content) == ("tool", "call_1", "sunny")


def test_langchain_tool_calling(serve):
    from langchain_openai import ChatOpenAI

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    reply = tool_call("get_weather", {"city": "Oslo"}, id="call_7")
    server = serve(FakeChatModel([reply, reply]))
    llm = ChatOpenAI(model="fake", base_url=server.url + "/v1", api_key="unused", max_retries=0).bind_tools(
        [get_weather])
    msg = llm.invoke("Weather in Oslo?")
    assert msg.tool_calls == [{"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_7", "type": "tool_call"}]
    total = None
    for chunk in llm.stream("Weather in Oslo?"):
        total = chunk if total is None else total + chunk
    assert total.tool_calls[0]["args"] == {"city": "Oslo"}
