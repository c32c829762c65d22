"""``n`` choices of one prompt from a local model: one batched decode (prompt once, a cache row per
choice), each choice with its own sampler, stop, finish reason, logprobs and token count."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from plait.fake import FakeChatModel
from plait.local_models.llm import llama_decoder
from plait.messages import AssistantChunk

torch = pytest.importorskip("torch")

Q = "Name a color. Answer in one word."
# Greedy choices against the n=1 answer: batched kernels may round differently from one row (torch
# does not promise equal bits; the int4 CPU kernel gave equal logits here). bfloat16 logits are
# coarse (1/8 apart near 20), so this is the promise: equal tokens until a near-tie, logprobs this close.
TOL = 0.25


def texts(messages: list[Any]) -> list[str]:
    return [m.content for m in messages]


def test_sampled_choices_are_valid_and_reproducible(smollm2: Any) -> None:
    opts = {"temperature": 1.0, "seed": 7, "max_tokens": 16}
    first = smollm2.generate(Q, n=3, **opts)
    assert len(first) == 3 and len(set(texts(first))) > 1  # three draws, not one answer three times
    for m in first:
        assert m.content.strip() and m.finish_reason in ("stop", "length")
        assert m.usage is not None and 0 < m.usage.completion_tokens <= 16
        assert (m.finish_reason == "length") == (m.usage.completion_tokens == 16)
        assert m.usage.prompt_tokens == smollm2.count_tokens(Q)
    assert texts(smollm2.generate(Q, n=3, **opts)) == texts(first)  # same machine, same threads
    # the documented seeds: choice i draws from the stream of an n=1 call with seed + i
    for i in (0, 2):
        assert smollm2.invoke(Q, **{**opts, "seed": 7 + i}).content == first[i].content


def test_greedy_choices_are_the_greedy_answer(smollm2: Any) -> None:
    opts = {"temperature": 0, "max_tokens": 24, "logprobs": True, "top_logprobs": 2}
    a, b = smollm2.generate(Q, n=2, **opts)
    assert a.content == b.content and a.finish_reason == b.finish_reason
    one = smollm2.invoke(Q, **opts)
    assert a.content and one.logprobs and a.logprobs
    for mine, ref in zip(a.logprobs, one.logprobs, strict=False):
        if mine.token != ref.token:  # only where the top two were (nearly) tied
            assert ref.top_logprobs[0].logprob - ref.top_logprobs[1].logprob < 2 * TOL
            break
        assert mine.logprob == pytest.approx(ref.logprob, abs=TOL)
    else:
        assert a.content == one.content


def test_streamed_choices_add_up_and_each_ends_once(smollm2: Any) -> None:
    opts = {"temperature": 0.8, "seed": 3, "max_tokens": 12}
    pairs = list(smollm2.stream_choices(Q, n=3, **opts))
    assert {i for i, _ in pairs} == {0, 1, 2}
    whole = smollm2.generate(Q, n=3, **opts)
    for i in range(3):
        chunks = [c for j, c in pairs if j == i]
        ends = [k for k, c in enumerate(chunks) if c.finish_reason]
        assert ends == [len(chunks) - 1]  # one finish chunk, the choice's last
        total = sum(chunks[1:], chunks[0])
        assert total.content == whole[i].content and total.usage == whole[i].usage
        assert chunks[0].model and chunks[0].id == pairs[0][1].id  # one request id for all choices


def test_each_choice_stops_on_its_own(smollm2: Any) -> None:
    """A stop sequence or max_tokens ends one choice; the others go on (their rows stay in the batch)."""
    msgs = smollm2.generate("Write a short story about a cat.", n=4, temperature=1.0, seed=11, max_tokens=20,
                            stop=["."])
    assert len(msgs) == 4
    counts = {m.usage.completion_tokens for m in msgs}
    assert len(counts) > 1  # they ended at different steps
    for m in msgs:
        assert "." not in m.content
        assert (m.finish_reason == "length") == (m.usage.completion_tokens == 20)


class Pet(BaseModel):
    name: str
    kind: Literal["cat", "dog", "bird"]
    age: int


def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def test_each_choice_follows_its_own_grammar(smollm2: Any) -> None:
    """One grammar state per choice: every choice is valid JSON of the schema, or a call of the tool."""
    fmt = {"type": "json_schema", "json_schema": {"name": "Pet", "schema": Pet.model_json_schema()}}
    pets = smollm2.generate("Describe a pet as JSON.", n=3, temperature=1.0, seed=2, max_tokens=40,
                            response_format=fmt)
    assert len(pets) == 3 and len({m.content for m in pets}) > 1
    for m in pets:
        Pet.model_validate_json(m.content)
        assert m.finish_reason in ("stop", "length")
    calls = smollm2.bind_tools([get_weather], tool_choice="required").generate(
        "Weather in Paris?", n=2, temperature=1.0, seed=4, max_tokens=40)
    for m in calls:
        assert m.finish_reason in ("tool_calls", "length") and m.tool_calls
        assert m.tool_calls[0].name == "get_weather" and isinstance(m.tool_calls[0].arguments.get("city"), str)
    streamed = {i: c for i, c in smollm2.bind_tools([get_weather], tool_choice="required").stream_choices(
        "Weather in Paris?", n=2, temperature=1.0, seed=4, max_tokens=40) if c.tool_call_chunks}
    assert set(streamed) == {0, 1}  # each choice's call arguments stream as deltas


def test_n_without_support_is_refused(smollm2: Any) -> None:
    fake = FakeChatModel(["one"])
    assert texts(fake.generate("hi", n=1)) == ["one"]
    with pytest.raises(ValueError, match="n=2"):
        fake.generate("hi", n=2)
    with pytest.raises(ValueError, match="n must be"):
        smollm2.generate(Q, n=0)


@pytest.mark.parametrize("quantize", [None, "int4"])
def test_forked_rows_decode_like_single_sequences(quantize: str | None, tmp_path: Path) -> None:
    """fork + a (rows, 1) step + keep give each row the logits of that sequence decoded alone."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if quantize and not llama_decoder.int4_available():
        pytest.skip("no int4 kernel in this torch")
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=64)).eval()
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=512, n_embd=64, n_layer=2, n_head=4, n_positions=64)).eval()
    decoders = [llama_decoder.LlamaDecoder(llama, quantize=quantize)]
    if quantize is None:
        decoders.append(llama_decoder.HFDecoder(gpt2))
    prompt, rows = torch.tensor([5, 17, 300, 42]), [[7, 8, 9], [11, 12, 13], [21, 22, 23]]
    tol = 1e-2 if quantize else 1e-4
    for decoder in decoders:
        with torch.inference_mode():
            alone = []
            for seq in rows:
                decoder.start(10)
                decoder.step(prompt)
                alone.append([decoder.step(torch.tensor([t])) for t in seq])
            decoder.start(10)
            decoder.step(prompt)
            decoder.fork(3)
            got = decoder.step(torch.tensor([[r[0]] for r in rows]))
            assert got.shape == (3, 512)
            for i in range(3):
                torch.testing.assert_close(got[i], alone[i][0], atol=tol, rtol=0)
            decoder.keep([0, 2])  # row 1 finished
            for k in (1, 2):
                got = decoder.step(torch.tensor([[rows[0][k]], [rows[2][k]]]))
                torch.testing.assert_close(got[0], alone[0][k], atol=tol, rtol=0)
                torch.testing.assert_close(got[1], alone[2][k], atol=tol, rtol=0)
            decoder.start(10)  # back to one sequence
            decoder.step(prompt)
            torch.testing.assert_close(decoder.step(torch.tensor([rows[1][0]])), alone[1][0], atol=tol, rtol=0)


def test_chunks_of_a_choice_are_assistant_chunks(smollm2: Any) -> None:
    pairs = list(smollm2.stream_choices(Q, n=1, max_tokens=4))
    assert pairs and all(i == 0 and isinstance(c, AssistantChunk) for i, c in pairs)
