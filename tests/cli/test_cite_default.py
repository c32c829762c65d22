"""RAG commands answer with the bundled citation adapter on the bundled model (issue 21), and only there."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from plait.commands._common import make_model
from plait.commands.serve import rag_chain
from plait.defaults import cite_adapter_path


def args(model: str, adapter: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(model=model, adapter=adapter, base_url=None, api_key="k")


def test_the_bundled_model_answers_rag_with_the_cite_adapter() -> None:
    assert make_model(args("local")).adapter == cite_adapter_path()
    assert (Path(cite_adapter_path()) / "adapter_config.json").is_file()


def test_none_another_folder_and_other_models_are_respected(tmp_path: Path) -> None:
    assert make_model(args("local", "none")).adapter is None
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    assert make_model(args("local", str(folder))).adapter == str(folder)
    assert not hasattr(make_model(args("openai:gpt-4o-mini")), "adapter")
    with pytest.raises(SystemExit, match="not a PEFT adapter folder"):
        make_model(args("local", str(tmp_path)))


def test_served_rag_uses_the_adapter_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from plait.defaults import default_store
    from plait.messages import Document

    monkeypatch.setenv("PLAIT_HOME", str(tmp_path))
    default_store("notes").upsert([Document(content="The office opens at 8 am.", metadata={"source": "n.txt"})])
    chain = rag_chain("notes", "local")
    assert chain.model.adapter == cite_adapter_path()
