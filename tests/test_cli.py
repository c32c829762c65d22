"""The ``plait ingest | ask | chat | demo`` commands, run in-process (and --help in a subprocess).

The other commands, and every error, are tested through the real command line in ``tests/cli/``.
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from plait.cli import main
from tests.app_support import ROOT


@pytest.mark.parametrize("command", ["ingest", "ask", "chat", "demo"])
def test_help(command):
    out = subprocess.run([sys.executable, "-m", "plait.cli", command, "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "--collection" in out
    if command != "ingest":
        assert "--model" in out and "--base-url" in out


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    folder = tmp_path_factory.mktemp("notes")
    (folder / "bees.md").write_text("# Bees\n\nHoney bees communicate the direction of flowers with a waggle dance.\n")
    (folder / "tea.txt").write_text("Green tea is steeped at about 80 degrees Celsius for two minutes.\n")
    (folder / "broken.bin").write_bytes(b"\x00\x01\x02binary")
    return folder


def test_ingest_reports_progress_and_skipped_files(ingested, capsys):
    assert main(["ingest", str(ingested), "--collection", "cli-notes", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 added" in out and "1 skipped" in out and "broken.bin" in out
    assert main(["ingest", str(ingested), "--collection", "cli-notes"]) == 0  # incremental: nothing new
    captured = capsys.readouterr()
    assert "2 unchanged" in captured.out
    assert "files:" not in captured.err  # progress bars only on a terminal (stderr is captured here)
    assert main(["ingest", str(ingested / "missing"), "--collection", "cli-notes"]) == 2
    assert "error: no such file or folder" in capsys.readouterr().err


@pytest.mark.integration
def test_ask_streams_then_lists_sources(ingested, capsys):
    main(["ingest", str(ingested), "--collection", "cli-notes", "--no-progress"])
    capsys.readouterr()
    assert main(["ask", "How do honey bees communicate the direction of flowers?", "--collection", "cli-notes",
                 "--max-tokens", "32"]) == 0
    out = capsys.readouterr().out
    assert "Sources" in out and "bees.md" in out
    assert main(["ask", "What is the airspeed of an unladen swallow?", "--collection", "cli-notes"]) == 0
    assert "don't know" in capsys.readouterr().out
    assert main(["ask", "anything", "--collection", "empty-collection"]) == 1


@pytest.mark.integration
def test_chat_keeps_history_across_runs(ingested, capsys, monkeypatch, tmp_path):
    main(["ingest", str(ingested), "--collection", "cli-notes", "--no-progress"])
    db = str(tmp_path / "history.sqlite3")
    common = ["chat", "--collection", "cli-notes", "--session", "s1", "--history-db", db, "--max-tokens", "24"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("At what temperature is green tea steeped?\n/quit\n"))
    assert main(common) == 0
    first = capsys.readouterr().out
    assert "0 earlier messages" in first and "plait> " in first
    monkeypatch.setattr(sys, "stdin", io.StringIO("/history\n"))
    assert main(common) == 0  # a new run: EOF ends it
    second = capsys.readouterr().out
    assert "2 earlier messages" in second and "user: At what temperature is green tea steeped?" in second


def test_demo_needs_docs(tmp_path):
    with pytest.raises(SystemExit, match="no README.md or docs"):
        main(["demo", "--docs", str(tmp_path)])
    assert (ROOT / "docs").is_dir()


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """``make demo`` itself: ingest the docs, three cited answers, one image (minutes on 2 cores)."""
    out = tmp_path / "demo.png"
    env = {**__import__("os").environ, "PLAIT_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "plait.cli", "demo", "--out", str(out)], capture_output=True,
                          text=True, env=env, timeout=1800, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("\nQ: ") == 3 and proc.stdout.count("Sources") >= 2
    assert "image saved to" in proc.stdout and out.exists()
