"""Grammar-constrained decoding: the real bundled SmolLM2 answers in the requested shape, every time."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from plait.local_models.llm import constrained
from plait.local_models.llm.constrained import plan
from plait.local_models.llm.replies import ReplyStream, split_calls
from plait.messages import AssistantChunk, AssistantMessage, ToolCall, ToolMessage, UserMessage
from plait.tools import Tool

torch = pytest.importorskip("torch")
pytest.importorskip("llguidance")

SMALL = {"max_tokens": 80}


# --- schemas and tools ---------------------------------------------------------------------------
class Place(BaseModel):
    city: str
    country: str


class Event(BaseModel):  # nested object
    title: str
    year: int
    place: Place


class Movie(BaseModel):  # enum and numbers with bounds
    title: str
    genre: Literal["drama", "comedy", "horror"]
    rating: float = Field(ge=0, le=10)


class Item(BaseModel):
    name: str
    quantity: int


class Order(BaseModel):  # array of objects
    customer: str
    items: list[Item]


class Contact(BaseModel):  # optional fields
    name: str
    email: str | None = None
    phone: str | None = None


class Cat(BaseModel):
    kind: Literal["cat"]
    name: str


class Dog(BaseModel):
    kind: Literal["dog"]
    name: str
    breed: str


class Pet(BaseModel):  # anyOf
    owner: str
    pet: Cat | Dog


class Recipe(BaseModel):
    dish: str
    ingredients: list[str]


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Current weather in a city.

    Args:
        city: the city, e.g. "Paris".
        unit: temperature unit.
    """
    return f"Sunny in {city}"


def convert_currency(amount: float, source: str, target: str) -> str:
    """Convert money between currencies.

    Args:
        amount: how much money.
        source: currency code to convert from, e.g. "USD".
        target: currency code to convert to, e.g. "EUR".
    """
    return "42"


TOOLS = [Tool.from_function(get_weather), Tool.from_function(convert_currency)]


def json_format(schema: type[BaseModel]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema()}}


def add_up(chunks: list[AssistantChunk]) -> AssistantMessage:
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    return total.to_message()


def valid_calls(msg: AssistantMessage) -> bool:
    by_name = {t.name: t for t in TOOLS}
    for call in msg.tool_calls:
        by_name[call.name].validate_arguments(call.arguments)  # raises when invalid
    return bool(msg.tool_calls)


# --- without a model: the request plan and the stream of calls ----------------------------------------
def test_tool_call_text_streams_as_argument_deltas() -> None:
    text = ('[{"tool": "get_weather", "arguments": {"city": "Paris \\"}{ [", "unit": "celsius"}}, '
            '{"tool": "convert_currency", "arguments": {"amount": 3, "source": "USD", "target": "EUR"}}]')
    reply, chunks = ReplyStream(TOOLS), []
    for i in range(0, len(text), 3):
        chunks += reply.feed(text[i:i + 3])
    chunks.append(reply.end("stop", None))
    msg = add_up(chunks)
    assert [c.name for c in msg.tool_calls] == ["get_weather", "convert_currency"]
    assert msg.tool_calls[0].arguments == {"city": 'Paris "}{ [', "unit": "celsius"}
    assert msg.finish_reason == "tool_calls" and msg.content == ""
    assert sum(1 for c in chunks for t in c.tool_call_chunks if t.arguments) > 10
    assert split_calls('{"tool": "get_weather", "argum') == []
    text_reply = ReplyStream(TOOLS)
    assert text_reply.feed("Hello")[0].content == "Hello" and text_reply.end("stop", None).finish_reason == "stop"
    # a JSON answer beside the tools (response_format with tool_choice="auto") is content, not a call
    json_reply = ReplyStream(TOOLS)
    assert json_reply.feed('{"t') == [] and json_reply.feed('ool') == []
    assert json_reply.feed('s": 1}')[0].content == '{"tools": 1}'
    cut = ReplyStream(TOOLS)
    assert cut.feed("{") == [] and cut.end("length", None).content == "{"


def test_plan_builds_one_grammar_and_refuses_contradictions() -> None:
    msgs = [UserMessage(content="hi")]
    _, p = plan(msgs, {})
    assert p.grammar is None
    _, p = plan(msgs, {"guided_choice": ["yes", 'no "way"']})
    assert p.grammar is not None and '"no \\"way\\""' in p.grammar
    with pytest.raises(ValueError, match="guided_regex and guided_choice"):
        plan(msgs, {"guided_regex": "a+", "guided_choice": ["a"]})
    with pytest.raises(ValueError, match="Unknown response_format type 'xml'"):
        plan(msgs, {"response_format": {"type": "xml"}})
    out, p = plan(msgs, {"tools": TOOLS, "tool_choice": "none"})  # no tool instructions; no call-like reply
    assert out == msgs and p.tools is None and p.free_text and "start: /[^\\[{" in (p.grammar or "")
    out, p = plan(msgs, {"tools": TOOLS, "tool_choice": "convert_currency", "parallel_tool_calls": False})
    assert p.tools and [t.name for t in p.tools] == ["convert_currency"] and '"array"' not in (p.grammar or "")
    assert "convert_currency" in out[0].content  # the instructions went into a system message
    # a conversation with tool calls and results is rewritten as plain turns for the chat template
    history = [UserMessage(content="Weather?"), AssistantMessage(tool_calls=[ToolCall(id="1", name="get_weather",
                                                                                       arguments={"city": "Oslo"})]),
               ToolMessage(tool_call_id="1", content="Snow")]
    out, _ = plan(history, {"tools": TOOLS})
    assert not any(isinstance(m, ToolMessage) for m in out) and "Snow" in out[-1].content


def test_closed_schemas_allow_no_extra_keys() -> None:
    schema = constrained._closed(Event.model_json_schema())
    assert schema["additionalProperties"] is False and schema["$defs"]["Place"]["additionalProperties"] is False
    assert constrained._closed({"type": "object"}) == {"type": "object"}


# --- the real bundled model -----------------------------------------------------------------------
@pytest.mark.parametrize(("schema", "prompt"), [
    (Event, "Extract the event: the Lamp Festival in 1999 takes place in Oslo, Norway."),
    (Movie, 'Extract the movie: "The Kettle" is a comedy rated 7.5 out of 10.'),
    (Order, "Extract the order: Alice ordered 2 lamps and 3 chairs."),
    (Contact, "Extract the contact: Bob Novak, email bob@example.com."),
    (Pet, "Extract: Carla has a poodle dog called Rex."),
])
def test_json_schema_answers_always_validate(smollm2: Any, schema: type[BaseModel], prompt: str) -> None:
    msg = smollm2.invoke(prompt, response_format=json_format(schema), **SMALL)
    schema.model_validate_json(msg.content)  # raises if the answer does not parse or validate
    assert msg.content.startswith("{") and msg.finish_reason in ("stop", "length")


def test_structured_output_and_json_object(smollm2: Any) -> None:
    event = smollm2.with_structured_output(Event).invoke("Extract: the Rock Festival 2001 is in Lima, Peru.", **SMALL)
    assert isinstance(event, Event)
    msg = smollm2.invoke("Describe Paris as JSON.", response_format={"type": "json_object"}, max_tokens=40)
    assert isinstance(json.loads(msg.content), dict)


def test_a_small_budget_still_ends_in_valid_json(smollm2: Any) -> None:
    # SmolLM2 tends to repeat array items; the answer is completed within max_tokens instead of cut
    prompt = "Extract the recipe: lamp soup made with flour, eggs, milk, basil, garlic and rice."
    for max_tokens in (20, 32):
        msg = smollm2.invoke(prompt, response_format=json_format(Recipe), max_tokens=max_tokens)
        Recipe.model_validate_json(msg.content)
        assert msg.usage is not None and msg.usage.completion_tokens <= max_tokens


def test_tool_choice_required_named_and_any_force_valid_calls(smollm2: Any) -> None:
    for choice, prompt in [("required", "How much is 20 USD in EUR?"), ("any", "Is it raining in Oslo?"),
                           ("get_weather", "How much is 20 USD in EUR?")]:
        msg = smollm2.bind_tools(TOOLS, tool_choice=choice).invoke(prompt, **SMALL)
        assert valid_calls(msg) and msg.finish_reason == "tool_calls" and msg.content == "", (choice, msg)
        if choice == "get_weather":
            assert {c.name for c in msg.tool_calls} == {"get_weather"}


def test_parallel_tool_calls_false_gives_at_most_one_call(smollm2: Any) -> None:
    bound = smollm2.bind_tools(TOOLS, tool_choice="required")
    msg = bound.invoke("What is the weather in Paris, in London and in Rome?", parallel_tool_calls=False, **SMALL)
    assert len(msg.tool_calls) == 1 and valid_calls(msg)


def test_auto_tool_choice_gives_text_or_a_valid_call(smollm2: Any) -> None:
    bound = smollm2.bind_tools(TOOLS)
    for prompt in ("Say hello to Alice.", "What is the weather in Paris?"):
        msg = bound.invoke(prompt, max_tokens=40)
        assert (msg.content.strip() and not msg.tool_calls) or (valid_calls(msg) and not msg.content), msg


def test_tool_choice_none_after_calls_answers_in_text(smollm2: Any) -> None:
    # A history full of calls invites the model to write another one as text: "none" forbids a reply
    # that starts like a call (plan), and the real model then answers in words.
    history: list[Any] = [UserMessage(content="What is the weather in Paris?"),
                          AssistantMessage(content="", tool_calls=[ToolCall(id="c1", name="get_weather",
                                                                            arguments={"city": "Paris"})]),
                          ToolMessage(tool_call_id="c1", name="get_weather", content="Sunny in Paris"),
                          UserMessage(content="And in Rome?")]
    _, p = plan(history, {"tools": TOOLS, "tool_choice": "none"})
    assert p.grammar is not None and p.free_text and p.tools is None
    msg = smollm2.bind_tools(TOOLS, tool_choice="none").invoke(history, max_tokens=30)
    assert not msg.tool_calls and msg.content.strip() and msg.content.lstrip()[0] not in "{["


def test_guided_choice_and_guided_regex(smollm2: Any) -> None:
    choices = ["positive", "negative", "neutral"]
    msg = smollm2.invoke("Sentiment of: 'I love this lamp!'", guided_choice=choices, **SMALL)
    assert msg.content in choices and msg.finish_reason == "stop"
    regex = r"[A-Z]{3}-[0-9]{4}"
    msg = smollm2.invoke("Invent a product code.", guided_regex=regex, **SMALL)
    assert re.fullmatch(regex, msg.content), msg.content
    with pytest.raises(ValueError, match="cannot be enforced"):
        smollm2.invoke("Hi", guided_regex="[unclosed", **SMALL)


def test_constrained_streams_token_by_token(smollm2: Any) -> None:
    chunks = list(smollm2.bind_tools(TOOLS, tool_choice="get_weather").stream("Weather in Tokyo?", **SMALL))
    pieces = [t.arguments for c in chunks for t in c.tool_call_chunks if t.arguments]
    assert len(pieces) >= 3, pieces  # arguments arrive as deltas, not in one piece
    msg = add_up(chunks)
    assert valid_calls(msg) and msg.finish_reason == "tool_calls"
    chunks = list(smollm2.stream("Extract: Oslo is in Norway.", response_format=json_format(Place), **SMALL))
    assert sum(1 for c in chunks if c.content) >= 3
    Place.model_validate_json(add_up(chunks).content)


def test_answers_close_within_any_budget_that_fits(smollm2: Any) -> None:
    """A 'model' of random logits (it rambles in strings) still ends every answer valid in the budget."""
    grammars = constrained.grammars(smollm2._engine)
    tokenizer = smollm2._engine.tokenizer
    generator = torch.Generator().manual_seed(0)
    for schema in (Event, Order, Pet):
        _, p = plan([UserMessage(content="x")], {"response_format": json_format(schema)})
        first = grammars.constraint(p)
        shortest = len(first.closing(first.matcher, 500) or [])
        assert 5 < shortest < 60
        for budget in (shortest, shortest + 4, shortest + 25):
            c, out = grammars.constraint(p), []
            while True:  # the decode loop's steps, with random logits in place of the model's
                out += c.forced(budget - len(out))
                if c.done or len(out) >= budget:
                    break
                logits = torch.randn(grammars.vocab_size, generator=generator)
                c.mask(logits)
                out += c.advance(int(logits.argmax()), budget - len(out))
            assert len(out) <= budget
            schema.model_validate_json(tokenizer.decode(out))


def test_grammars_are_compiled_once(smollm2: Any) -> None:
    grammars = constrained.grammars(smollm2._engine)
    _, p = plan([UserMessage(content="x")], {"guided_choice": ["a", "b", "c"]})
    grammars.constraint(p)
    size = len(grammars._compiled)
    assert grammars.constraint(p).matcher is not grammars.constraint(p).matcher  # fresh state per request
    assert len(grammars._compiled) == size


def test_transformers_decoder_and_hf_tokenizer_path(tmp_path: Path, smollm2_tokenizer: Any) -> None:
    """A random GPT-2 (the transformers decoder, transformers' tokenizer) still answers in shape."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from plait.local_models.llm import llama_decoder
    from plait.local_models.llm.transformers_chat import TransformersChatModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(smollm2_tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=256,
                               bos_token_id=1, eos_token_id=2)).save_pretrained(tmp_path)
    smollm2_tokenizer.save_pretrained(tmp_path)
    model = TransformersChatModel(tmp_path)
    msg = model.invoke("Pick one.", guided_choice=["red", "green", "blue"], max_tokens=8)
    assert isinstance(model._engine.decoder, llama_decoder.HFDecoder)
    assert msg.content in ("red", "green", "blue")
    msg = model.invoke("Pick.", response_format=json_format(Movie), max_tokens=40)
    Movie.model_validate_json(msg.content)
