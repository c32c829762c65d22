"""Real OpenAI clients against ``plait serve --model local`` (the bundled SmolLM2, constrained decoding).

Each client does what its users do: a plain chat, a stream, a tool loop (the model asks for a tool,
the client runs it and sends the result back, the model answers) and a structured answer. The
server is a real ``plait serve`` process; the clients are the installed packages (the ``test``
extra): the openai SDK, langchain-openai, openai-agents, pydantic-ai and instructor.

What a 135M model says is not checked beyond what it reliably gets right (Paris, asked with no
system prompt; under the agents' "Answer briefly." instructions its greedy answer changes with the
smallest change in arithmetic, so there only the protocol is checked); what is checked is the
protocol: every client parses every reply, streamed deltas add up to the answer, tool calls carry
arguments valid for their schema, structured answers validate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Literal

import openai
import pytest
from pydantic import BaseModel

from plait.serve.server import free_port
from tests.app_support import wait_ready

pytestmark = pytest.mark.integration

MODEL = "local"
QUESTION = "What is the capital of France?"
WEATHER_QUESTION = "What is the weather in Paris right now? Use the get_weather tool."


class Weather(BaseModel):
    city: str
    temperature_c: int
    conditions: Literal["sunny", "cloudy", "rainy", "snowy"]


class Calls:
    """The tool the clients run, recording each call."""

    def __init__(self) -> None:
        self.cities: list[str] = []

    def get_weather(self, city: str) -> str:
        """Get the current weather in a city."""
        self.cities.append(city)
        return f"It is sunny and 21 C in {city}."


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "plait.cli", "serve", "--model", "local", "--name", MODEL,
                             "--port", str(port), "--log-level", "warning"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_ready(url, proc)["status"] != "failed", "plait serve --model local did not warm up"
        yield url + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def calls() -> Calls:
    return Calls()


def sdk(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=300)


def aclient(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=300)


TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


# --- the openai SDK -------------------------------------------------------------------------------
def test_openai_sdk_chat(base_url):
    r = sdk(base_url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}],
                                              max_tokens=30, temperature=0)
    assert "Paris" in r.choices[0].message.content and r.usage.completion_tokens > 0


def test_openai_sdk_stream(base_url):
    chunks = list(sdk(base_url).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}], max_tokens=30, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text and len(chunks) > 3 and chunks[-1].usage.completion_tokens > 0


def test_openai_sdk_tool_loop(base_url, calls):
    c = sdk(base_url)
    messages: list[dict] = [{"role": "user", "content": WEATHER_QUESTION}]
    first = c.chat.completions.create(model=MODEL, messages=messages, tools=[TOOL], tool_choice="required",
                                      parallel_tool_calls=False, max_tokens=60, temperature=0)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and len(first.choices[0].message.tool_calls) == 1
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id,
                  "content": calls.get_weather(**json.loads(call.function.arguments))}]
    final = c.chat.completions.create(model=MODEL, messages=messages, tools=[TOOL], tool_choice="none",
                                      max_tokens=40, temperature=0)
    assert calls.cities and final.choices[0].message.content and not final.choices[0].message.tool_calls


def test_openai_sdk_structured_output(base_url):
    r = sdk(base_url).chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": "The weather in Oslo: 3 degrees and snowing."}],
        response_format=Weather, max_tokens=60, temperature=0)
    assert isinstance(r.choices[0].message.parsed, Weather)


# --- langchain-openai -----------------------------------------------------------------------------
def chat_openai(base_url: str, **kw):
    ChatOpenAI = pytest.importorskip("langchain_openai").ChatOpenAI  # noqa: N806

    return ChatOpenAI(model=MODEL, base_url=base_url, api_key="unused", max_retries=0, temperature=0, **kw)


def test_langchain_chat(base_url):
    assert "Paris" in chat_openai(base_url, max_tokens=30).invoke(QUESTION).content


def test_langchain_stream(base_url):
    pieces = [c.content for c in chat_openai(base_url, max_tokens=30).stream(QUESTION)]
    assert "Paris" in "".join(pieces) and len(pieces) > 3


def test_langchain_tool_loop(base_url, calls):
    pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    get_weather = tool(calls.get_weather)
    llm = chat_openai(base_url, max_tokens=60)
    messages = [HumanMessage(WEATHER_QUESTION)]
    ai = llm.bind_tools([get_weather], tool_choice="get_weather").invoke(messages)
    assert len(ai.tool_calls) == 1
    messages += [ai, ToolMessage(get_weather.invoke(ai.tool_calls[0]["args"]), tool_call_id=ai.tool_calls[0]["id"])]
    final = llm.bind_tools([get_weather], tool_choice="none").invoke(messages)
    assert calls.cities and final.content and not final.tool_calls


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])  # json_mode promises JSON, not the schema
def test_langchain_structured_output(base_url, method):
    llm = chat_openai(base_url, max_tokens=80).with_structured_output(Weather, method=method)
    prompt = "The weather in Oslo: 3 degrees and snowing. Answer in JSON with city, temperature_c and conditions."
    assert isinstance(llm.invoke(prompt), Weather)


# --- openai-agents --------------------------------------------------------------------------------
def agents_model(base_url: str):
    pytest.importorskip("agents", reason="the test extra: pip install 'plait[test]'")
    from agents import OpenAIChatCompletionsModel, set_tracing_disabled

    set_tracing_disabled(True)
    return OpenAIChatCompletionsModel(model=MODEL, openai_client=aclient(base_url))


def _agent(base_url: str, **kw):
    from agents import Agent, ModelSettings

    return Agent(name="assistant", instructions="Answer briefly.", model=agents_model(base_url),
                 model_settings=kw.pop("model_settings", ModelSettings(temperature=0, max_tokens=60)), **kw)


async def test_openai_agents_chat(base_url):
    agent = _agent(base_url)
    from agents import Runner

    result = await Runner.run(agent, QUESTION)
    assert isinstance(result.final_output, str) and result.final_output.strip()


async def test_openai_agents_stream(base_url):
    agent = _agent(base_url)
    from agents import Runner
    from openai.types.responses import ResponseTextDeltaEvent

    result = Runner.run_streamed(agent, QUESTION)
    deltas = [e.data.delta async for e in result.stream_events()
              if e.type == "raw_response_event" and isinstance(e.data, ResponseTextDeltaEvent)]
    assert len(deltas) > 3 and "".join(deltas) == result.final_output and result.final_output.strip()


async def test_openai_agents_tool_loop(base_url, calls):
    pytest.importorskip("agents", reason="the test extra: pip install 'plait[test]'")
    from agents import ModelSettings, Runner, function_tool

    # The tool's result is the answer: after a tool, openai-agents sets tool_choice back to "auto", and
    # there the 135M model asks for the same tool again until max_turns.
    agent = _agent(base_url, tools=[function_tool(calls.get_weather)], tool_use_behavior="stop_on_first_tool",
                   model_settings=ModelSettings(temperature=0, max_tokens=60, tool_choice="required",
                                                parallel_tool_calls=False))
    result = await Runner.run(agent, WEATHER_QUESTION, max_turns=4)
    assert len(calls.cities) == 1 and result.final_output == calls.get_weather(calls.cities[0])


async def test_openai_agents_structured_output(base_url):
    agent = _agent(base_url, output_type=Weather)
    from agents import Runner

    result = await Runner.run(agent, "The weather in Oslo: 3 degrees and snowing.")
    assert isinstance(result.final_output, Weather)


# --- pydantic-ai ----------------------------------------------------------------------------------
def pydantic_agent(base_url: str, **kw):
    pytest.importorskip("pydantic_ai", reason="the test extra: pip install 'plait[test]'")
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=aclient(base_url)))
    settings = kw.pop("model_settings", {"temperature": 0, "max_tokens": 60})
    return Agent(model, instructions="Answer briefly.", model_settings=settings, **kw)


async def test_pydantic_ai_chat(base_url):
    output = (await pydantic_agent(base_url).run(QUESTION)).output
    assert isinstance(output, str) and output.strip()


async def test_pydantic_ai_stream(base_url):
    async with pydantic_agent(base_url).run_stream(QUESTION) as result:
        deltas = [d async for d in result.stream_text(delta=True, debounce_by=None)]
    assert len(deltas) > 3 and "".join(deltas).strip()


async def test_pydantic_ai_tool_loop(base_url, calls):
    def settings(ctx):  # a tool call first, then the answer (left to itself the 135M model skips the tool)
        return {"temperature": 0, "max_tokens": 60, "tool_choice": "required" if ctx.run_step <= 1 else "none"}

    agent = pydantic_agent(base_url, model_settings=settings, tools=[calls.get_weather])
    result = await agent.run(WEATHER_QUESTION)
    assert len(calls.cities) == 1 and isinstance(result.output, str) and result.output


@pytest.mark.parametrize("native", [False, True])
async def test_pydantic_ai_structured_output(base_url, native):
    NativeOutput = pytest.importorskip("pydantic_ai").NativeOutput  # noqa: N806

    agent = pydantic_agent(base_url, output_type=NativeOutput(Weather) if native else Weather)
    result = await agent.run("The weather in Oslo: 3 degrees and snowing.")
    assert isinstance(result.output, Weather)


# --- instructor -----------------------------------------------------------------------------------
def instructor_client(base_url: str, mode_name: str = "TOOLS"):
    instructor = pytest.importorskip("instructor", reason="pip install --no-deps instructor docstring-parser")

    return instructor.from_openai(sdk(base_url), mode=getattr(instructor.Mode, mode_name))


def test_instructor_chat(base_url):
    r = instructor_client(base_url).chat.completions.create(
        model=MODEL, response_model=None, messages=[{"role": "user", "content": QUESTION}], max_tokens=30,
        temperature=0)
    assert "Paris" in r.choices[0].message.content


def test_instructor_stream(base_url):
    partials = list(instructor_client(base_url).chat.completions.create_partial(
        model=MODEL, response_model=Weather, max_tokens=60, temperature=0,
        messages=[{"role": "user", "content": "The weather in Oslo: 3 degrees and snowing."}]))
    assert len(partials) > 3  # the arguments arrive as deltas, so the object fills in step by step
    assert Weather.model_validate(partials[-1].model_dump())


def test_instructor_tool_loop(base_url, calls):
    class GetWeather(BaseModel):
        """Get the current weather in a city."""

        city: str

    client = instructor_client(base_url)
    messages: list[dict] = [{"role": "user", "content": WEATHER_QUESTION}]
    ask = client.chat.completions.create(model=MODEL, response_model=GetWeather, messages=messages, max_tokens=40,
                                         temperature=0)
    messages += [{"role": "assistant", "content": None, "tool_calls": [{
        "id": "call_1", "type": "function", "function": {"name": "GetWeather", "arguments": ask.model_dump_json()}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": calls.get_weather(ask.city)}]
    final = client.chat.completions.create(model=MODEL, response_model=None, messages=messages, max_tokens=40,
                                           temperature=0)
    assert calls.cities and final.choices[0].message.content


@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA"])  # (JSON mode promises JSON, not the schema)
def test_instructor_structured_output(base_url, mode):
    w = instructor_client(base_url, mode).chat.completions.create(
        model=MODEL, response_model=Weather, max_tokens=60, temperature=0, max_retries=0,
        messages=[{"role": "user", "content": "The weather in Oslo: 3 degrees and snowing."}])
    assert isinstance(w, Weather)
