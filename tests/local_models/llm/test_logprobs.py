"""Log-probabilities of local models (OpenAI's ``logprobs`` / ``top_logprobs``): the aligner, the
sampler's record, and the bundled SmolLM2 (greedy, sampled, stop sequences, grammar, streams)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from plait.local_models.llm.decoding import LogprobText
from plait.messages import AssistantChunk, TokenLogprob

torch = pytest.importorskip("torch")

from plait.local_models.llm.decoding import Sampler  # noqa: E402

Q = "What is the capital of France? Answer in one sentence."
TOL = 1e-4  # stream vs whole: the same float32 computation; a margin for kernels that pick another order


def texts(tokens: list[list[Any]]) -> list[str]:
    return [t[0] for t in tokens]


# --- aligning tokens with emitted text -----------------------------------------------------------
def test_text_is_handed_on_at_token_boundaries():
    lp = LogprobText()
    lp.add("Hel", -0.1, [])
    assert lp.emit("He") == ("", [])  # the stop matcher let out part of a token: wait for the rest
    assert lp.emit("l") == ("Hel", [["Hel", -0.1, []]])
    lp.add("lo", -0.2, [])
    lp.add(" W", -0.3, [])
    text, tokens = lp.emit("lo W")
    assert text == "lo W" and texts(tokens) == ["lo", " W"]


def test_a_stop_sequence_cuts_the_token_it_starts_in_and_drops_the_rest():
    lp = LogprobText()
    for piece in ("Hel", "lo W", "orld"):
        lp.add(piece, -1.0, [])
    text, tokens = lp.emit("Hel")
    assert text == "Hel"
    text, tokens = lp.emit("l", final=True)  # stop "o W": the stop matcher let out "l" and stopped
    assert text == "l" and texts(tokens) == ["l"]


def test_a_character_split_across_tokens_goes_with_the_token_that_completes_it():
    lp = LogprobText()
    lp.add("", -0.5, [])  # the first bytes of "é"
    assert lp.emit("") == ("", [])  # held: its character is not complete
    lp.add("é", -0.25, [])
    text, tokens = lp.emit("é")
    assert text == "é" and texts(tokens) == ["", "é"]
    lp.add("", -0.5, [])  # an incomplete character at the very end is flushed as decoded
    text, tokens = lp.emit("\ufffd", final=True)
    assert text == "\ufffd" and texts(tokens) == ["\ufffd"]


def test_chunk_logprobs_add_up_in_order_and_none_stays_none():
    a, b = TokenLogprob(token="a", logprob=-1.0), TokenLogprob(token="b", logprob=-2.0)
    assert (AssistantChunk(content="x") + AssistantChunk(content="y")).logprobs is None
    total = AssistantChunk(logprobs=[a]) + AssistantChunk() + AssistantChunk(logprobs=[b])
    assert [t.token for t in total.logprobs] == ["a", "b"]
    assert total.to_message().logprobs == [a, b]


# --- the sampler's record --------------------------------------------------------------------------
def test_sampler_records_the_distribution_it_chose_from():
    logits = torch.tensor([2.0, 1.0, 0.5, float("-inf")])
    off = Sampler()
    off(logits)
    assert off.last == (0.0, [])  # not asked: nothing computed
    s = Sampler(logprobs=4, presence_penalty=2.0)
    assert s(logits.clone()) == 0
    expected = torch.log_softmax(logits, -1)
    assert s.last[0] == pytest.approx(float(expected[0]))
    assert [t for t, _ in s.last[1]] == [0, 1, 2]  # -inf (a grammar's mask) is no candidate
    # second step: token 0 was penalised by 2, so token 1 is chosen and top; the record shows the penalty
    assert s(logits.clone()) == 1
    penalised = torch.log_softmax(torch.tensor([0.0, 1.0, 0.5, float("-inf")]), -1)
    assert s.last[0] == pytest.approx(float(penalised[1]))
    assert [t for t, _ in s.last[1]] == [1, 2, 0]


def test_sampled_record_ignores_temperature():
    logits = torch.tensor([2.0, 1.0, 0.5])
    s = Sampler(temperature=1.7, top_k=2, seed=3, logprobs=3)
    token = s(logits)
    assert s.last[0] == pytest.approx(float(torch.log_softmax(logits, -1)[token]))


# --- the bundled model -----------------------------------------------------------------------------
def check(tokens: list[TokenLogprob], content: str, k: int, greedy: bool = True) -> None:
    assert "".join(t.token for t in tokens) == content
    for t in tokens:
        assert t.logprob <= 0 and t.bytes == list(t.token.encode())
        values = [c.logprob for c in t.top_logprobs]
        assert len(values) <= k and values == sorted(values, reverse=True)
        assert all(v <= 0 for v in values) and sum(math.exp(v) for v in values) <= 1 + 1e-5
        if greedy and k:
            assert t.top_logprobs[0].logprob == pytest.approx(t.logprob, abs=1e-6)


def test_greedy_logprobs_whole_and_streamed(smollm2):
    msg = smollm2.invoke(Q, logprobs=True, top_logprobs=5, max_tokens=24, temperature=0)
    assert "Paris" in msg.content and msg.logprobs
    check(msg.logprobs, msg.content, 5)
    # the chosen token is the most likely one, by its text too
    assert all(t.token == t.top_logprobs[0].token for t in msg.logprobs)
    chunks = list(smollm2.stream(Q, logprobs=True, top_logprobs=5, max_tokens=24, temperature=0))
    for c in chunks:  # every chunk's tokens make up exactly its text
        assert c.content == "".join(t.token for t in c.logprobs or [])
    streamed = [t for c in chunks for t in c.logprobs or []]
    assert [t.token for t in streamed] == [t.token for t in msg.logprobs]
    assert max(abs(a.logprob - b.logprob) for a, b in zip(streamed, msg.logprobs, strict=True)) <= TOL


def test_not_asked_costs_nothing_and_top_logprobs_needs_logprobs(smollm2):
    assert smollm2.invoke(Q, max_tokens=3).logprobs is None
    msg = smollm2.invoke(Q, logprobs=True, max_tokens=3)
    assert msg.logprobs and all(t.top_logprobs == [] for t in msg.logprobs)
    with pytest.raises(ValueError, match="top_logprobs"):
        smollm2.invoke(Q, top_logprobs=2, max_tokens=3)


def test_a_stop_sequence_inside_a_token(smollm2):
    whole = smollm2.invoke(Q, logprobs=True, max_tokens=24, temperature=0)
    assert " Paris" in [t.token for t in whole.logprobs]
    cut = smollm2.invoke(Q, logprobs=True, max_tokens=24, temperature=0, stop=["aris"])
    assert cut.content == whole.content[:whole.content.index("aris")]
    assert "".join(t.token for t in cut.logprobs) == cut.content
    assert cut.logprobs[-1].token == " P"  # " Paris", cut where the stop sequence starts
    paris = next(t for t in whole.logprobs if t.token == " Paris")
    assert cut.logprobs[-1].logprob == pytest.approx(paris.logprob, abs=TOL)


def test_sampled_tokens_are_scored_before_temperature(smollm2):
    greedy = smollm2.invoke(Q, logprobs=True, top_logprobs=5, max_tokens=2, temperature=0)
    hot = smollm2.invoke(Q, logprobs=True, top_logprobs=5, max_tokens=8, temperature=1.5, seed=7)
    check(hot.logprobs, hot.content, 5, greedy=False)
    # the first position has the same logits either way: the same distribution is reported
    cold, warm = greedy.logprobs[0].top_logprobs, hot.logprobs[0].top_logprobs
    assert [c.token for c in warm] == [c.token for c in cold]
    assert [c.logprob for c in warm] == pytest.approx([c.logprob for c in cold], abs=TOL)


def test_under_a_grammar_the_distribution_is_the_masked_one(smollm2):
    msg = smollm2.invoke("Is the sky blue?", logprobs=True, top_logprobs=20, temperature=0,
                         guided_choice=["Yes, it is", "No"])
    assert msg.content in ("Yes, it is", "No")
    check(msg.logprobs, msg.content, 20)
    first = msg.logprobs[0]
    # only the tokens the grammar allows are candidates, and their probabilities sum to 1
    assert all("Yes, it is".startswith(c.token) or "No".startswith(c.token) for c in first.top_logprobs)
    assert sum(math.exp(c.logprob) for c in first.top_logprobs) == pytest.approx(1.0, abs=1e-4)
    # what the grammar writes by itself (here all of it: one choice) has probability 1
    forced = smollm2.invoke("Is the sky blue?", logprobs=True, top_logprobs=3, guided_choice=["Yes, it is blue"])
    assert forced.content == "Yes, it is blue" and "".join(t.token for t in forced.logprobs) == forced.content
    assert all(t.logprob == 0.0 and [(c.token, c.logprob) for c in t.top_logprobs] == [(t.token, 0.0)]
               for t in forced.logprobs)


def test_a_tool_call_reply_has_no_content_logprobs(smollm2):
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    msg = smollm2.bind_tools([get_weather], tool_choice="required").invoke(
        "Weather in Paris?", logprobs=True, max_tokens=40, temperature=0)
    assert msg.tool_calls and msg.content == "" and msg.logprobs == []
