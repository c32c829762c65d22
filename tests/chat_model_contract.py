"""The contract every chat-model backend passes: one test class, reused by each backend's tests.

How to use it::

    import pytest
    from tests.chat_model_contract import ChatModelContract

    class TestMyBackend(ChatModelContract):
        @pytest.fixture
        def model(self):                  # the backend under test (may be module- or session-scoped)
            return MyChatModel(...)

        # Optional knobs (class attributes), shown with their defaults:
        options = {"temperature": 0.0, "max_tokens": 24}   # deterministic, short replies
        tools_reliable = False    # True if the model reliably calls a tool when told to (or is made to)
        json_reliable = False     # True if the model reliably answers JSON that fits a schema (or is made to)

The backend's replies must be deterministic under ``options`` (greedy decoding, a seed, or a
scripted server), because the suite compares invoke, stream, astream, batch and stop-sequence
runs of the same prompt. Tests that need a capable model (tool calls, JSON answers) are skipped
unless the knobs say the model is up to it; the wiring underneath is tested with scripted models.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pydantic import BaseModel

from plait.chat_model import ChatModel
from plait.messages import (
    AssistantChunk,
    AssistantMessage,
    ChatPromptValue,
    StringPromptValue,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
)


def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather in a city.

    Args:
        city: the name of the city, e.g. "Paris".
        unit: "celsius" or "fahrenheit".
    """
    return f"It is 21 degrees {unit} and sunny in {city}."


class Capital(BaseModel):
    """A country's capital city."""

    country: str
    capital: str


def add_up(chunks: list[AssistantChunk]) -> AssistantMessage:
    assert chunks, "the stream yielded nothing"
    assert all(isinstance(c, AssistantChunk) for c in chunks), [type(c) for c in chunks]
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    return total.to_message()


class ChatModelContract:
    """Subclass it and provide a ``model`` fixture; see the module docstring."""

    options: dict[str, Any] = {"temperature": 0.0, "max_tokens": 24}
    prompts = ["Say hello to Alice.", "Name three colours.", "What is two plus two?", "Describe a cat."]
    long_prompt = "Write a few sentences about the sea and the ships that sail on it."
    tools_reliable = False
    json_reliable = False

    @pytest.fixture
    def model(self) -> ChatModel:
        raise NotImplementedError("a backend's test class must define the 'model' fixture")

    # --- invoke, input forms ---------------------------------------------------------------------
    def test_invoke_returns_an_assistant_message(self, model: ChatModel) -> None:
        msg = model.invoke(self.prompts[0], **self.options)
        assert isinstance(msg, AssistantMessage)
        assert msg.content.strip(), "empty reply"
        assert msg.finish_reason in ("stop", "length"), msg.finish_reason
        assert not msg.tool_calls
        if msg.usage is not None:
            assert msg.usage.completion_tokens > 0

    def test_every_input_form_gives_the_same_reply(self, model: ChatModel) -> None:
        text = self.prompts[1]
        expected = model.invoke(text, **self.options).content
        forms: list[Any] = [[("user", text)], StringPromptValue(text=text),
                            ChatPromptValue(messages=[UserMessage(content=text)])]
        for form in forms:
            assert model.invoke(form, **self.options).content == expected, form

    def test_input_messages_are_not_changed(self, model: ChatModel) -> None:
        messages = [SystemMessage(content="You are terse."), UserMessage(content=self.prompts[0])]
        before = [m.model_copy(deep=True) for m in messages]
        model.invoke(messages, **self.options)
        assert messages == before

    # --- streaming -------------------------------------------------------------------------------
    def test_stream_chunks_add_up_to_invoke(self, model: ChatModel) -> None:
        expected = model.invoke(self.long_prompt, **self.options)
        chunks = list(model.stream(self.long_prompt, **self.options))
        streamed = add_up(chunks)
        assert streamed.content == expected.content
        assert streamed.finish_reason == expected.finish_reason
        if model.can_stream and len(expected.content.split()) > 2:
            assert sum(1 for c in chunks if c.content) > 1, "a streaming backend must stream in pieces"

    async def test_astream_matches_stream(self, model: ChatModel) -> None:
        sync = add_up(list(model.stream(self.prompts[2], **self.options)))
        chunks = [c async for c in model.astream(self.prompts[2], **self.options)]
        assert add_up(chunks).content == sync.content

    async def test_ainvoke_matches_invoke(self, model: ChatModel) -> None:
        expected = model.invoke(self.prompts[3], **self.options).content
        assert (await model.ainvoke(self.prompts[3], **self.options)).content == expected

    # --- batch and concurrency -------------------------------------------------------------------
    def test_batch_keeps_order_and_matches_invoke(self, model: ChatModel) -> None:
        expected = [model.invoke(p, **self.options).content for p in self.prompts[:3]]
        got = model.batch(self.prompts[:3], max_concurrency=2, **self.options)
        assert [m.content for m in got] == expected

    async def test_abatch_matches_invoke(self, model: ChatModel) -> None:
        expected = [model.invoke(p, **self.options).content for p in self.prompts[:3]]
        got = await model.abatch(self.prompts[:3], max_concurrency=3, **self.options)
        assert [m.content for m in got] == expected

    def test_concurrent_callers_get_their_own_answers(self, model: ChatModel) -> None:
        prompts = self.prompts[:3]
        expected = {p: model.invoke(p, **self.options).content for p in prompts}
        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(lambda p: (p, model.invoke(p, **self.options).content), prompts * 2))
        for prompt, content in got:
            assert content == expected[prompt], prompt

    # --- options ---------------------------------------------------------------------------------
    def test_unknown_option_is_an_error(self, model: ChatModel) -> None:
        with pytest.raises(ValueError, match="nonsense_option"):
            model.invoke(self.prompts[0], nonsense_option=1)
        with pytest.raises(ValueError, match="nonsense_option"):
            list(model.stream(self.prompts[0], nonsense_option=1))

    def test_option_of_the_wrong_type_is_an_error(self, model: ChatModel) -> None:
        with pytest.raises(ValueError, match="temperature"):
            model.invoke(self.prompts[0], temperature="very hot")

    def test_bound_options_act_like_call_options(self, model: ChatModel) -> None:
        expected = model.invoke(self.prompts[0], **self.options).content
        assert model.bind(**self.options).invoke(self.prompts[0]).content == expected
        assert model.with_options(**self.options).invoke(self.prompts[0]).content == expected

    def test_max_tokens_cuts_the_reply(self, model: ChatModel) -> None:
        msg = model.invoke(self.long_prompt, **{**self.options, "max_tokens": 2})
        assert msg.finish_reason == "length"
        if msg.usage is not None:
            assert msg.usage.completion_tokens <= 2
        full = model.invoke(self.long_prompt, **self.options).content
        assert len(msg.content) < len(full)

    def test_stop_sequence_ends_the_reply_before_it(self, model: ChatModel) -> None:
        full = model.invoke(self.long_prompt, **self.options).content
        words = [w for w in re.findall(r"[A-Za-z]{3,}", full) if full.find(w) > 0]
        assert words, f"the reply is too short to test stop sequences: {full!r}"
        stop = words[len(words) // 2]
        cut = model.invoke(self.long_prompt, **{**self.options, "stop": [stop]})
        assert stop not in cut.content
        assert full.startswith(cut.content.rstrip()), (full, cut.content)
        assert cut.finish_reason == "stop"
        streamed = add_up(list(model.stream(self.long_prompt, **{**self.options, "stop": [stop]})))
        assert streamed.content == cut.content

    # --- tools and structured output -------------------------------------------------------------
    def test_conversation_with_tool_results_is_accepted(self, model: ChatModel) -> None:
        messages = [UserMessage(content="What is the weather in Paris?"),
                    AssistantMessage(tool_calls=[ToolCall(id="call_1", name="get_weather",
                                                          arguments={"city": "Paris"})]),
                    ToolMessage(tool_call_id="call_1", content=get_weather("Paris"))]
        msg = model.bind_tools([get_weather]).invoke(messages, **self.options)
        assert isinstance(msg, AssistantMessage)
        assert msg.content or msg.tool_calls

    def test_calls_a_tool_when_told_to(self, model: ChatModel) -> None:
        if not self.tools_reliable:
            pytest.skip("this model is not reliable enough at tool calls (tools_reliable = False)")
        bound = model.bind_tools([get_weather], tool_choice="get_weather")
        options = {**self.options, "max_tokens": max(self.options.get("max_tokens") or 0, 48)}  # room for a call
        msg = bound.invoke("What is the weather in Paris right now?", **options)
        assert [c.name for c in msg.tool_calls] == ["get_weather"]
        assert "paris" in str(msg.tool_calls[0].arguments.get("city", "")).lower()
        streamed = add_up(list(bound.stream("What is the weather in Paris right now?", **options)))
        assert [c.name for c in streamed.tool_calls] == ["get_weather"]
        assert streamed.tool_calls[0].arguments == msg.tool_calls[0].arguments

    def test_structured_output_is_a_validated_object(self, model: ChatModel) -> None:
        if not self.json_reliable:
            pytest.skip("this model is not reliable enough at JSON answers (json_reliable = False)")
        result = model.with_structured_output(Capital).invoke(
            "The country is France and the capital is Paris. Fill in the country and its capital.")
        assert isinstance(result, Capital)
        assert "paris" in result.capital.lower()
