"""``import plait`` stays light, and missing extras fail with an error that names the extra."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from plait.defaults import MissingExtraError, require

HEAVY = ["torch", "transformers", "sentence_transformers", "chromadb", "openai", "diffusers", "fastapi"]


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_plait_pulls_in_no_heavy_dependency():
    assert _loaded_after("import plait") == []


def test_core_names_pull_in_no_heavy_dependency():
    code = ("from plait import *\nimport plait.fake, plait.cli, plait.tracing, plait.defaults\n"
            "from plait import ChatPromptTemplate, StrOutputParser, JsonOutputParser, Document")
    assert _loaded_after(code) == []


def test_every_public_name_resolves():
    import plait

    for name in plait.__all__:
        assert getattr(plait, name) is not None


def test_unknown_attribute_is_an_attribute_error():
    import plait

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        plait.Nope  # noqa: B018


def test_missing_extra_names_the_extra():
    with pytest.raises(MissingExtraError, match=r"pip install 'plait\[diffusion\]'"):
        require("surely_not_installed_module_xyz", "diffusion")
