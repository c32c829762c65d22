"""OpenAIChatModel against a real OpenAI-wire-format server on 127.0.0.1 (no mocked SDK)."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from plait.messages import AssistantMessage, ToolCall, ToolMessage, UserMessage
from plait.parsers import OutputParserError
from plait.remote._openai import RemoteModelError
from plait.remote.openai_chat import OpenAIChatModel
from tests.chat_model_contract import ChatModelContract, add_up, get_weather
from tests.remote.openai_server import OpenAIServer, Reply


class TestOpenAIChatContract(ChatModelContract):
    tools_reliable = True  # the server calls a forced tool and fills a JSON schema (see openai_server)
    json_reliable = True

    @pytest.fixture
    def model(self, chat: OpenAIChatModel) -> OpenAIChatModel:
        return chat


class TestPromptedToolsOverOpenAIContract(ChatModelContract):
    """The same server with native tools and JSON schema switched off: plait prompts for them."""

    tools_reliable = True  # the server follows plait's prompted tool and JSON instructions
    json_reliable = True

    @pytest.fixture
    def model(self, server: OpenAIServer) -> OpenAIChatModel:
        return OpenAIChatModel("test-model", base_url=server.base_url, api_key=server.api_key,
                               supports_tools=False, supports_json_schema=False)


class Person(BaseModel):
    name: str
    age: int = Field(ge=0)


def test_options_reach_the_wire(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    chat.invoke("hi", temperature=0.2, top_p=0.9, seed=7, stop="END", max_tokens=5, presence_penalty=0.1,
                extra_body={"top_k": 20})
    body = server.chat_requests()[-1]
    assert body["temperature"] == 0.2 and body["top_p"] == 0.9 and body["seed"] == 7
    assert body["stop"] == ["END"] and body["max_tokens"] == 5 and body["presence_penalty"] == 0.1
    assert body["top_k"] == 20  # extra_body is merged into the JSON body
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert "tools" not in body and "stream" not in body


def test_api_openai_com_gets_max_completion_tokens() -> None:
    model = OpenAIChatModel("gpt-4o-mini", api_key="sk-unused", base_url="https://api.openai.com/v1")
    req = model._request([UserMessage(content="x")], {"max_tokens": 3}, stream=True)
    assert req["max_completion_tokens"] == 3 and "max_tokens" not in req
    assert req["stream_options"] == {"include_usage": True}


def test_tool_calls_are_parsed(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.reply(None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}},
                                   {"name": "get_weather", "arguments": {"city": "Rome", "unit": "fahrenheit"}}])
    msg = chat.bind_tools([get_weather], tool_choice="required").invoke("weather in Paris and Rome?")
    assert [c.arguments for c in msg.tool_calls] == [{"city": "Paris"}, {"city": "Rome", "unit": "fahrenheit"}]
    assert msg.finish_reason == "tool_calls" and msg.content == ""
    body = server.chat_requests()[-1]
    assert body["tool_choice"] == "required"
    fn = body["tools"][0]["function"]
    assert fn["name"] == "get_weather" and fn["description"] == "Get the current weather in a city."
    assert fn["parameters"]["required"] == ["city"]
    assert fn["parameters"]["properties"]["city"]["description"].startswith("the name of the city")


def test_tool_calls_stream_in_pieces(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.reply("Let me check.", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    chunks = list(chat.bind_tools([get_weather], tool_choice="get_weather").stream("weather?"))
    assert sum(1 for c in chunks if c.tool_call_chunks) > 2  # the arguments arrive in several pieces
    msg = add_up(chunks)
    assert msg.content == "Let me check."
    assert msg.tool_calls == [ToolCall(id="call_0_get_weather", name="get_weather", arguments={"city": "Paris"})]
    assert msg.usage is not None and msg.usage.total_tokens > 0
    assert server.chat_requests()[-1]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


async def test_tool_calls_stream_async(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.reply(None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    chunks = [c async for c in chat.bind_tools([get_weather]).astream("weather?")]
    assert add_up(chunks).tool_calls[0].arguments == {"city": "Oslo"}


def test_tool_history_goes_out_in_wire_format(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    chat.bind_tools([get_weather]).invoke([
        UserMessage(content="weather?"),
        AssistantMessage(tool_calls=[ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"})]),
        ToolMessage(tool_call_id="c1", content="sunny")])
    sent = server.chat_requests()[-1]["messages"]
    assert sent[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_call_id": "c1"}


def test_structured_output_uses_json_schema(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.reply('{"name": "Ada", "age": 36}')
    person = chat.with_structured_output(Person).invoke("Who wrote the first program?")
    assert person == Person(name="Ada", age=36)
    fmt = server.chat_requests()[-1]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Person"
    assert fmt["json_schema"]["schema"]["required"] == ["name", "age"]


def test_structured_output_reasks_once_with_the_error(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.reply('{"name": "Ada", "age": -1}')
    server.reply('{"name": "Ada", "age": 36}')
    assert chat.with_structured_output(Person).invoke("Who?") == Person(name="Ada", age=36)
    second = server.chat_requests()[-1]["messages"]
    assert second[-2] == {"role": "assistant", "content": '{"name": "Ada", "age": -1}'}
    assert "age" in second[-1]["content"] and "greater than or equal to 0" in second[-1]["content"]


def test_structured_output_gives_up_after_the_second_failure(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.reply("Ada, 36 years old")
    server.reply("still not JSON")
    with pytest.raises(OutputParserError, match="did not validate as Person"):
        chat.with_structured_output(Person).invoke("Who?")
    assert len(server.chat_requests()) == 2


def test_structured_output_by_tool_calling(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.reply(None, tool_calls=[{"name": "Person", "arguments": {"name": "Ada"}}])  # age missing
    server.reply(None, tool_calls=[{"name": "Person", "arguments": {"name": "Ada", "age": 36}}])
    out = chat.with_structured_output(Person, method="tool_calling", include_raw=True).invoke("Who?")
    assert out["parsed"] == Person(name="Ada", age=36) and out["raw"].tool_calls
    first, second = server.chat_requests()
    assert first["tool_choice"] == {"type": "function", "function": {"name": "Person"}}
    feedback = second["messages"][-1]
    assert feedback["role"] == "tool" and feedback["tool_call_id"] == "call_0_Person"
    assert "age" in feedback["content"] and "Field required" in feedback["content"]


def test_prompted_tools_when_the_server_has_none(server: OpenAIServer) -> None:
    model = OpenAIChatModel("test-model", base_url=server.base_url, api_key=server.api_key, supports_tools=False)
    server.reply('{"tool": "get_weather", "arguments": {"city": "Lima"}}')
    msg = model.bind_tools([get_weather]).invoke("weather in Lima?")
    assert [(c.name, c.arguments) for c in msg.tool_calls] == [("get_weather", {"city": "Lima"})]
    body = server.chat_requests()[-1]
    assert "tools" not in body and "tool_choice" not in body
    system = body["messages"][0]
    assert system["role"] == "system" and '"name": "get_weather"' in system["content"]
    # streamed: text that is not a call streams through; a call arrives parsed
    server.reply('```json\n{"tool": "get_weather", "arguments": {"city": "Quito"}}\n```')
    streamed = add_up(list(model.bind_tools([get_weather]).stream("weather in Quito?")))
    assert streamed.tool_calls[0].arguments == {"city": "Quito"} and streamed.finish_reason == "tool_calls"
    chunks = list(model.bind_tools([get_weather]).stream("no tools needed here"))
    assert sum(1 for c in chunks if c.content) > 2 and add_up(chunks).content.startswith("You said:")


def test_batch_respects_max_concurrency(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    prompts = [f"prompt {i}" for i in range(6)]
    server.fault("latency", delay=0.15, times=6)
    got = chat.batch(prompts, max_concurrency=2)
    assert [m.content for m in got] == [f"You said: {p}" for p in prompts]
    assert server.peak_in_flight == 2


async def test_abatch_respects_max_concurrency(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.fault("latency", delay=0.15, times=6)
    got = await chat.abatch([f"p{i}" for i in range(6)], max_concurrency=3)
    assert [m.content for m in got] == [f"You said: p{i}" for i in range(6)]
    assert server.peak_in_flight == 3


def test_reply_function_sees_the_request(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.reply_with(lambda body: Reply(json.dumps({"n": len(body["messages"])})))
    assert chat.invoke([("system", "s"), ("user", "u")]).content == '{"n": 2}'


def test_settings_from_the_environment(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
    monkeypatch.setenv("OPENAI_ORG_ID", "org-test")
    assert OpenAIChatModel("test-model").invoke("hello").content == "You said: hello"
    assert server.requests[-1].headers.get("openai-organization") == "org-test"
    # arguments win over the environment
    with pytest.raises(RemoteModelError, match="API key"):
        OpenAIChatModel("test-model", api_key="wrong").invoke("hello")


def test_no_key_for_openai_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(RemoteModelError, match="set OPENAI_API_KEY"):
        OpenAIChatModel("gpt-4o-mini").invoke("hello")


def test_a_server_without_key_needs_none(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.api_key = "not-needed"  # what plait sends when no key is set for a non-OpenAI server
    assert OpenAIChatModel("test-model", base_url=server.base_url).invoke("hey").content == "You said: hey"


def test_a_server_that_ignores_n_is_an_error_not_fewer_choices(server: OpenAIServer, chat: OpenAIChatModel) -> None:
    # the test server, like Ollama, answers one choice whatever n asks for
    server.reply("only one")
    with pytest.raises(RemoteModelError, match="does not support 'n'"):
        chat.generate("hi", n=2)
    assert server.chat_requests()[-1]["n"] == 2
    server.reply("only one")
    with pytest.raises(RemoteModelError, match="'n'"):
        list(chat.stream_choices("hi", n=2))
