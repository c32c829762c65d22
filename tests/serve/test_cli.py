"""``plait serve`` argument handling (the serving itself is tested in test_lifecycle through the CLI)."""

from __future__ import annotations

import pytest

from plait.cli import main
from plait.commands import serve as serve_cmd


def test_non_loopback_host_needs_an_api_key(capsys, monkeypatch):
    monkeypatch.delenv("PLAIT_API_KEY", raising=False)
    assert main(["serve", "tests.serve.apps:chat", "--host", "0.0.0.0"]) == 2
    assert "--api-key" in capsys.readouterr().err


def test_target_is_required_and_exclusive():
    with pytest.raises(SystemExit, match="MODULE:OBJECT"):
        main(["serve"])
    with pytest.raises(SystemExit, match="MODULE:OBJECT"):
        main(["serve", "tests.serve.apps:chat", "--model", "local"])


@pytest.mark.parametrize("spec, message", [
    ("tests.serve.apps", "not MODULE:OBJECT"),
    ("tests.serve.nowhere:chat", "cannot import"),
    ("tests.serve.apps:missing", "no attribute"),
])
def test_bad_targets_say_what_is_wrong(spec, message):
    with pytest.raises(SystemExit, match=message):
        serve_cmd.load_target(spec)


def test_target_objects_and_factories_load():
    from plait.fake import FakeChatModel

    assert isinstance(serve_cmd.load_target("tests.serve.apps:chat"), FakeChatModel)
    assert isinstance(serve_cmd.load_target("tests.serve.apps:slow_chat"), FakeChatModel)  # a factory, called


def test_unknown_model_spec_is_an_error():
    with pytest.raises(SystemExit, match="Unknown chat model spec"):
        main(["serve", "--model", "nonsense:x"])
