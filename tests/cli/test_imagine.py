"""``plait imagine``: the vocabulary in --help, a warning for words the bundled model does not know,
and a viewable image by default."""

from __future__ import annotations

import json

import pytest

from plait.commands.imagine import enlargement, unknown_words
from tests.cli.conftest import plait


def test_help_lists_the_vocabulary(tmp_path):
    out = plait(tmp_path, "imagine", "--help").out
    for word in ("red", "purple", "circle", "triangle", "small", "large", "on the left", "in the middle",
                 "--size", "native"):
        assert word in out


def test_unknown_words_are_named():
    assert unknown_words("a cat riding a bicycle") == ["cat", "riding", "bicycle"]
    assert unknown_words("A small RED circle on the left") == []
    assert unknown_words("a large blue square in the middle, a blue dog") == ["dog"]


def test_enlargement():
    assert enlargement((32, 32), 256, None) == 8
    assert enlargement((32, 32), 300, None) == 10  # at least the size asked for, in whole pixels
    assert enlargement((512, 512), 256, None) == 1  # never shrinks
    assert enlargement((32, 32), None, None) == 1  # --size native
    assert enlargement((32, 32), 256, 4) == 4  # --scale wins


@pytest.mark.integration
def test_out_of_vocabulary_prompt_warns_and_the_image_is_enlarged(tmp_path):
    from PIL import Image

    out = tmp_path / "cat.png"
    r = plait(tmp_path, "imagine", "a red cat riding a bicycle", "-o", str(out), "--steps", "2", "--seed", "0",
              "--json")
    assert r.code == 0, r.text
    assert "does not know 'cat', 'riding', 'bicycle'" in r.err and "plait imagine --help" in r.err
    info = json.loads(r.out)
    assert info["paths"] == [str(out)] and info["drawn"] == [32, 32] and info["saved"] == [256, 256]
    assert Image.open(out).size == (256, 256)
    assert "Traceback" not in r.err and "\r" not in r.err  # no progress bar off a terminal
