"""The chat-model interface: base-class defaults, prompted tools, structured output, model specs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
from pydantic import BaseModel

from plait.chat_model import ChatModel
from plait.fake import FakeChatModel
from plait.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolMessage, Usage, UserMessage
from plait.models import chat_model_from_spec
from plait.parsers import OutputParserError
from plait.prompted_tools import parse_tool_calls
from plait.structured_output import StructuredOutput
from plait.tools import to_tool
from tests.chat_model_contract import ChatModelContract, add_up, get_weather

_WORD = re.compile(r"\s*\S+")


class EchoChatModel(ChatModel):
    """The smallest real backend: only ``_generate``, echoing the last user turn word by word.

    Honours stop and max_tokens (a word is a token), and records what it was sent.
    """

    def __init__(self, replies: list[str] | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.replies = list(replies or [])
        self.sent: list[tuple[list[Message], dict[str, Any]]] = []

    def _generate(self, messages: list[Message], options: dict[str, Any]) -> AssistantMessage:
        self.sent.append((messages, options))
        last = next(m.content for m in reversed(messages) if m.role == "user")
        text = self.replies.pop(0) if self.replies else f"Echo: {last}"
        finish = "stop"
        cuts = [i for i in (text.find(s) for s in options.get("stop") or []) if i >= 0]
        if cuts:
            text = text[:min(cuts)]
        words = _WORD.findall(text)
        if options.get("max_tokens") is not None and len(words) > options["max_tokens"]:
            words, finish = words[:options["max_tokens"]], "length"
        return AssistantMessage(content="".join(words), finish_reason=finish, model="echo",
                                usage=Usage(completion_tokens=len(words), total_tokens=len(words)))


class TestBaseClassDefaultsContract(ChatModelContract):
    """A backend with nothing but ``_generate`` passes the contract through the base-class defaults."""

    @pytest.fixture
    def model(self) -> EchoChatModel:
        return EchoChatModel()


class NativeToolsModel(EchoChatModel):
    supports_tools = True
    supports_json_schema = True


class Capital(BaseModel):
    country: str
    capital: str


CALL = '{"tool": "get_weather", "arguments": {"city": "Paris"}}'


# --- prompted tool calling -----------------------------------------------------------------------
def test_prompted_tools_describe_the_tools_and_parse_the_call() -> None:
    model = EchoChatModel([CALL])
    msg = model.bind_tools([get_weather]).invoke([SystemMessage(content="Be brief."), UserMessage(content="Paris?")])
    assert [(c.name, c.arguments) for c in msg.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert msg.content == "" and msg.finish_reason == "tool_calls" and msg.tool_calls[0].id.startswith("call_")
    messages, options = model.sent[0]
    assert "tools" not in options and "tool_choice" not in options  # the backend never sees them
    assert len([m for m in messages if m.role == "system"]) == 1  # merged into the one system message
    system = messages[0].content
    assert system.startswith("Be brief.\n\n") and '"name": "get_weather"' in system
    assert '"required": ["city"]' in system


def test_tool_choice_shapes_the_instructions() -> None:
    model = EchoChatModel(["a", "b", CALL])
    model.bind_tools([get_weather], tool_choice="required").invoke("x")
    model.bind_tools([get_weather], tool_choice="get_weather").invoke("x")
    assert "You must call one of the tools now." in model.sent[0][0][0].content
    assert "You must call the tool 'get_weather' now." in model.sent[1][0][0].content
    msg = model.bind_tools([get_weather], tool_choice="none").invoke("x")
    assert msg.content == CALL and not msg.tool_calls  # tools switched off: text stays text
    assert all(m.role != "system" for m in model.sent[2][0])


@pytest.mark.parametrize("reply", [
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    '```json\n{"tool": "get_weather", "arguments": {"city": "Paris"}}\n```',
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    '[{"tool": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}]',
    '{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}',
])
def test_tool_call_formats_models_use(reply: str) -> None:
    calls = parse_tool_calls(reply, [to_tool(get_weather)])
    assert calls is not None and [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris"})]


@pytest.mark.parametrize("reply", [
    "It is sunny in Paris.",
    'Sure: {"tool": "get_weather", "arguments": {"city": "Paris"}}',  # prose first: an answer, not a call
    '{"tool": "unknown_tool", "arguments": {}}',
    '{"city": "Paris"}',
    "[1, 2, 3]",
    '{"tool": "get_weather", "arguments": "not json"}',
    'Checking. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
])
def test_replies_that_are_not_tool_calls_stay_text(reply: str) -> None:
    assert parse_tool_calls(reply, [to_tool(get_weather)]) is None
    msg = EchoChatModel([reply]).bind_tools([get_weather]).invoke("x")
    assert msg.content == reply and not msg.tool_calls


def test_prompted_stream_passes_text_through_and_holds_back_calls() -> None:
    fake = FakeChatModel(["It is sunny and warm in Paris today.", CALL, '{"city": "Paris"}'])
    fake.supports_tools = False
    bound = fake.bind_tools([get_weather])
    text_chunks = list(bound.stream("weather?"))
    assert [c.content for c in text_chunks[:3]] == ["It", " is", " sunny"]  # streamed as it came
    assert add_up(text_chunks).content == "It is sunny and warm in Paris today."
    call_chunks = list(bound.stream("weather?"))
    assert len(call_chunks) == 1 and call_chunks[0].content == ""
    assert add_up(call_chunks).tool_calls[0].arguments == {"city": "Paris"}
    assert add_up(list(bound.stream("weather?"))).content == '{"city": "Paris"}'  # JSON, not a call


def test_prompted_stream_and_invoke_agree() -> None:
    replies = [CALL, "Plain answer.", "<tool_call>[" + CALL + "]</tool_call>", "[" + CALL + ", " + CALL + "]",
               'Text then {"tool": "get_weather", "arguments": {}}', "```python\nprint(1)\n```"]
    for reply in replies:
        invoked = EchoChatModel([reply]).bind_tools([get_weather]).invoke("x")
        fake = FakeChatModel([reply])
        fake.supports_tools = False
        streamed = add_up(list(fake.bind_tools([get_weather]).stream("x")))
        assert streamed.content == invoked.content, reply
        assert [(c.name, c.arguments) for c in streamed.tool_calls] == [
            (c.name, c.arguments) for c in invoked.tool_calls], reply


async def test_prompted_astream_and_ainvoke() -> None:
    fake = FakeChatModel([CALL])
    fake.supports_tools = False
    bound = fake.bind_tools([get_weather])
    assert add_up([c async for c in bound.astream("x")]).tool_calls[0].name == "get_weather"
    assert (await bound.ainvoke("x")).tool_calls[0].name == "get_weather"


def test_a_backend_can_use_its_own_tool_prompt() -> None:
    class HermesStyle(EchoChatModel):
        def tool_prompt(self, tools: list[Any], tool_choice: str | None) -> str:
            return "<tools>" + json.dumps([t.spec() for t in tools]) + "</tools>"

    model = HermesStyle(['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'])
    msg = model.bind_tools([get_weather]).invoke("Rome?")
    assert msg.tool_calls[0].arguments == {"city": "Rome"}
    assert model.sent[0][0][0].content.startswith("<tools>[{")


def test_tool_history_is_rewritten_for_a_backend_without_tools() -> None:
    model = EchoChatModel(["It is sunny."])
    model.bind_tools([get_weather]).invoke([
        UserMessage(content="Weather in Paris?"),
        AssistantMessage(content="Checking.", tool_calls=[ToolCall(id="c1", name="get_weather",
                                                                    arguments={"city": "Paris"})]),
        ToolMessage(tool_call_id="c1", content="21 degrees")])
    sent = model.sent[0][0]
    assert [m.role for m in sent] == ["system", "user", "assistant", "user"]
    assert json.loads(sent[2].content.split("\n", 1)[1]) == {"tool": "get_weather", "arguments": {"city": "Paris"}}
    assert sent[3].content == "Result of the get_weather tool call: 21 degrees"


def test_native_backend_gets_tools_and_messages_untouched() -> None:
    model = NativeToolsModel()
    messages = [UserMessage(content="hi"), AssistantMessage(tool_calls=[ToolCall(id="c", name="get_weather")]),
                ToolMessage(tool_call_id="c", content="ok"), UserMessage(content="and now?")]
    model.bind_tools([get_weather], tool_choice="auto").invoke(messages, response_format={"type": "json_object"})
    sent, options = model.sent[0]
    assert sent == messages
    assert [t.name for t in options["tools"]] == ["get_weather"] and options["tool_choice"] == "auto"
    assert options["response_format"] == {"type": "json_object"}


def test_response_format_becomes_instructions_without_native_support() -> None:
    model = EchoChatModel()
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    model.invoke("x", response_format={"type": "json_schema", "json_schema": {"name": "A", "schema": schema}})
    sent, options = model.sent[0]
    assert "response_format" not in options
    assert sent[0].role == "system" and json.dumps(schema) in sent[0].content
    with pytest.raises(ValueError, match="Unknown response_format type 'xml'"):
        model.invoke("x", response_format={"type": "xml"})


# --- bind_tools and options ----------------------------------------------------------------------
def test_bind_tools_returns_a_copy() -> None:
    model = EchoChatModel(temperature=0.5)
    bound = model.bind_tools([get_weather, Capital])
    assert isinstance(bound, EchoChatModel) and bound is not model
    assert [t.name for t in bound.default_options["tools"]] == ["get_weather", "Capital"]
    assert bound.default_options["temperature"] == 0.5 and "tools" not in model.default_options
    assert bound.replies is model.replies  # shares state (weights, clients) with the original
    with pytest.raises(ValueError, match="Two tools share a name"):
        model.bind_tools([get_weather, to_tool(get_weather)])
    with pytest.raises(ValueError, match=r"tool_choice='search' names no bound tool"):
        model.bind_tools([get_weather], tool_choice="search")


def test_options_are_validated() -> None:
    model = EchoChatModel()
    assert model.validate_options({"stop": "END"}) == {"stop": ["END"]}
    wire = model.validate_options({"tools": [to_tool(get_weather).to_openai()],
                                   "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})
    assert wire["tool_choice"] == "get_weather" and wire["tools"][0].name == "get_weather"
    with pytest.raises(ValueError, match=r"max_tokens.*Known options"):
        model.invoke("x", max_tokens="lots")
    with pytest.raises(ValueError, match="Cannot make a tool from int"):
        model.invoke("x", tools=[3])


# --- structured output ---------------------------------------------------------------------------
def test_structured_output_method_follows_the_capabilities() -> None:
    assert EchoChatModel().with_structured_output(Capital).method == "json_prompt"
    assert NativeToolsModel().with_structured_output(Capital).method == "json_schema"
    tools_only = NativeToolsModel()
    tools_only.supports_json_schema = False
    assert tools_only.with_structured_output(Capital).method == "tool_calling"
    with pytest.raises(ValueError, match="Unknown structured-output method"):
        EchoChatModel().with_structured_output(Capital, method="magic")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pydantic model class"):
        StructuredOutput(EchoChatModel(), dict)  # type: ignore[type-var]


def test_prompted_structured_output_reasks_once() -> None:
    model = EchoChatModel(['Sure! {"country": "France"}', '```json\n{"country": "France", "capital": "Paris"}\n```'])
    result = model.with_structured_output(Capital, include_raw=True).invoke("Capital of France?")
    assert result["parsed"] == Capital(country="France", capital="Paris")
    first, second = (sent for sent, _ in model.sent)
    assert "JSON schema" in first[0].content and '"capital"' in first[0].content
    assert second[-2].content == 'Sure! {"country": "France"}'
    assert "capital" in second[-1].content and "Field required" in second[-1].content


async def test_structured_output_async_and_failure() -> None:
    ok = FakeChatModel(['{"country": "Peru", "capital": "Lima"}'])
    assert await ok.with_structured_output(Capital).ainvoke("Peru?") == Capital(country="Peru", capital="Lima")
    bad = EchoChatModel(["no idea", "still no idea"])
    with pytest.raises(OutputParserError, match="did not validate as Capital") as err:
        await bad.with_structured_output(Capital).ainvoke("Peru?")
    assert err.value.raw == "still no idea"


def test_structured_output_by_prompted_tool_call() -> None:
    model = EchoChatModel(['{"tool": "Capital", "arguments": {"country": "Chile", "capital": "Santiago"}}'])
    out = model.with_structured_output(Capital, method="tool_calling").invoke("Chile?")
    assert out == Capital(country="Chile", capital="Santiago")
    assert "You must call the tool 'Capital' now." in model.sent[0][0][0].content


def test_structured_output_in_a_chain() -> None:
    from plait.prompts import ChatPromptTemplate

    prompt = ChatPromptTemplate.from_messages([("user", "Capital of {country}?")])
    chain = prompt | FakeChatModel(['{"country": "Japan", "capital": "Tokyo"}']).with_structured_output(Capital)
    assert chain.invoke({"country": "Japan"}).capital == "Tokyo"


# --- model specs ---------------------------------------------------------------------------------
def test_openai_spec() -> None:
    from plait.remote.openai_chat import OpenAIChatModel

    model = chat_model_from_spec("openai:qwen2.5", base_url="http://127.0.0.1:9/v1", api_key="k", temperature=0)
    assert isinstance(model, OpenAIChatModel) and model.model_name == "qwen2.5"
    assert model.settings.base_url == "http://127.0.0.1:9/v1" and model.default_options == {"temperature": 0.0}


@pytest.mark.parametrize(("spec", "message"), [
    ("openai", "needs a model name"), ("openai:", "needs a model name"), ("local:", "needs a model path"),
    ("gpt-4", "Unknown chat model spec 'gpt-4'"),
])
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        chat_model_from_spec(spec)


def test_local_spec_builds_the_transformers_backend_lazily() -> None:
    pytest.importorskip("plait.local_models.llm.transformers_chat")
    model = chat_model_from_spec("local")
    assert isinstance(model, ChatModel) and type(model).__name__ == "TransformersChatModel"


def test_interface_modules_import_nothing_heavy() -> None:
    code = ("import sys, plait.chat_model, plait.tools, plait.models, plait.structured_output, "
            "plait.remote, plait.remote.openai_chat, plait.remote.openai_embeddings, plait.remote.openai_images\n"
            "heavy = [m for m in ('openai', 'httpx', 'torch', 'transformers', 'PIL') if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
