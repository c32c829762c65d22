"""The bundled citation adapter is a standard PEFT folder for the bundled model, within the size limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plait.defaults import cite_adapter_path


def test_bundled_cite_adapter_is_a_small_peft_folder() -> None:
    peft = pytest.importorskip("peft")
    folder = Path(cite_adapter_path())
    assert (folder / "adapter_model.safetensors").stat().st_size <= 20 * 2**20
    config = peft.PeftConfig.from_pretrained(str(folder))
    assert config.peft_type == "LORA" and set(config.target_modules) >= {"q_proj", "down_proj"}
    figures = json.loads((folder / "plait-tune.json").read_text())
    assert figures["base"] == "local" and "eval loss" in (folder / "README.md").read_text()
