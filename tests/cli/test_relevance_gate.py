"""The relevance gate through the real ``plait ask``: a keyword match counts, and a refusal names the option."""

from __future__ import annotations

import json
import random

import pytest

from tests.cli.conftest import plait

WORDS = ("river stone market garden window engine paper cloud signal harbor violin ladder copper meadow lantern "
         "tunnel orbit canvas").split()


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    """One sentence that answers, deep inside a long chunk of other words (issue 20's 'huge' collection)."""
    rng = random.Random(0)
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "." for _ in range(60)]
    paragraphs.insert(30, "The magic password is swordfish.")
    folder = tmp_path_factory.mktemp("huge")
    (folder / "notes.txt").write_text("\n\n".join(paragraphs))
    home = tmp_path_factory.mktemp("home")
    r = plait(home, "ingest", str(folder), "--collection", "huge")
    assert r.code == 0, r.text
    return home


def test_off_topic_question_is_refused_with_the_reason_and_the_option(huge):
    r = plait(huge, "ask", "How long should I boil an egg?", "--collection", "huge", "--no-log")
    assert r.code == 0 and "Traceback" not in r.text, r.text
    assert "I don't know" in r.out
    assert "no passage holds every word of the question (boil, egg, long)" in r.out
    assert "--min-similarity 0 turns the check off" in r.out


@pytest.mark.slow  # loads the chat model
def test_a_keyword_match_passes_the_gate_though_the_dense_score_is_low(huge):
    dense = json.loads(plait(huge, "search", "What is the magic password?", "--collection", "huge", "--kind",
                             "dense", "-k", "1", "--json").out)
    assert dense[0]["score"] < 0.3  # the premise: the gate's dense side alone would refuse
    r = plait(huge, "ask", "What is the magic password?", "--collection", "huge", "--json", "--max-tokens", "12",
              "--no-log")
    assert r.code == 0, r.text
    result = json.loads(r.out)
    assert result["sources"] and "swordfish" in result["sources"][0]["content"]
    assert "no indexed passage" not in result["answer"]
