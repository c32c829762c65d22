"""Sampling, incremental detokenizing and stop sequences, on the real SmolLM2 tokenizer."""

from __future__ import annotations

from typing import Any

import pytest

from plait.local_models.llm.decoding import IncrementalDetokenizer, Sampler, StopMatcher

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("text", ["Hello, world!", "héllo wörld — naïve café", "日本語のテキスト", "emoji 🎉🚀 done",
                                  "  leading spaces\nand\ttabs  "])
def test_incremental_detokenizer_adds_up_to_the_full_decode(text: str, smollm2_tokenizer: Any) -> None:
    ids = smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]
    detok = IncrementalDetokenizer(smollm2_tokenizer)
    pieces = [detok.add(i) for i in ids]
    pieces.append(detok.flush())
    assert "".join(pieces) == smollm2_tokenizer.decode(ids)
    assert not any("\ufffd" in p for p in pieces), pieces


def test_stop_matcher_holds_back_prefixes_and_cuts() -> None:
    stops = StopMatcher(["END", "\n\n"])
    out = [stops.add(p) for p in ["Hello E", "N", "nd of E", "N", "D more"]]
    assert "".join(out) == "Hello ENnd of " and stops.stopped
    assert out[0] == "Hello " and out[1] == "" and out[2] == "ENnd of "


def test_stop_matcher_flush_releases_a_false_alarm() -> None:
    stops = StopMatcher(["STOP"])
    assert stops.add("go ST") == "go "
    assert stops.flush() == "ST" and not stops.stopped


def test_no_stop_sequences_passes_everything_through() -> None:
    stops = StopMatcher(None)
    assert [stops.add(p) for p in ["a", "b"]] == ["a", "b"]


def test_sampler_greedy_and_seeded() -> None:
    logits = torch.tensor([0.1, 2.0, 0.5, 1.9])
    assert Sampler()(logits) == 1 and Sampler(temperature=0)(logits) == 1
    draws = [Sampler(temperature=1.0, seed=5)(logits) for _ in range(3)]
    assert len(set(draws)) == 1
    seq = Sampler(temperature=1.0, seed=5)
    assert {seq(logits) for _ in range(200)} == {0, 1, 2, 3}  # all tokens reachable
    top2 = Sampler(temperature=1.0, top_k=2, seed=1)
    assert {top2(logits) for _ in range(200)} == {1, 3}
    nucleus = Sampler(temperature=1.0, top_p=0.5, seed=1)  # token 1 holds ~46%, so 1 and 3 are kept
    assert {nucleus(logits) for _ in range(200)} == {1, 3}
    with pytest.raises(ValueError, match="temperature"):
        Sampler(temperature=-1)


def test_frequency_and_presence_penalties_lower_tokens_already_chosen() -> None:
    logits = torch.tensor([0.0, 2.0, 1.5, 1.0])
    assert [Sampler()(logits) for _ in range(3)] == [1, 1, 1]  # greedy alone repeats itself
    freq = Sampler(frequency_penalty=0.3)  # token 1 loses 0.3 per use: 2.0 -> 1.7 -> 1.4 (< 1.5)
    assert [freq(logits) for _ in range(4)] == [1, 1, 2, 1]
    assert freq.counts == {1: 3, 2: 1}
    pres = Sampler(presence_penalty=0.6)  # paid once, however often: 1 (2.0), 2 (1.5 > 1.4), then 1 (1.4) for good
    assert [pres(logits) for _ in range(4)] == [1, 2, 1, 1]
    assert torch.equal(logits, torch.tensor([0.0, 2.0, 1.5, 1.0]))  # the caller's logits are left alone
    with pytest.raises(ValueError, match="frequency_penalty must be between -2 and 2"):
        Sampler(frequency_penalty=3)
    with pytest.raises(ValueError, match="presence_penalty"):
        Sampler(presence_penalty=-2.5)
