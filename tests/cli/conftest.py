"""The real ``plait`` command in a subprocess, with its own data directory, and one ingested collection.

Every run pays Python's start and the command's imports (about a second; a few more when the
embedding model loads), so the tests share one ingested data directory (``notes``) and keep the
runs that load a model few.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.app_support import ROOT


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def plait(home: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Result:
    """Run ``python -m plait.cli ARGS`` with ``PLAIT_HOME=home``, offline, no OpenAI settings inherited."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    environment.update({"PLAIT_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    for key in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY"):  # the CLI's own defaults apply
        environment.pop(key, None)
    environment.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "plait.cli", *args], capture_output=True, text=True,
                          env=environment, input=input if input is not None else "", cwd=cwd or ROOT)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_clean_error(result: Result, *needles: str, code: int | None = None) -> None:
    """Failed with one ``error:`` line on stderr naming ``needles``, and no traceback anywhere."""
    assert result.code != 0, result.text
    if code is not None:
        assert result.code == code, result.text
    assert "Traceback" not in result.text, result.text
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.err
    for needle in needles:
        assert needle in errors[0], errors[0]


@dataclass
class Notes:
    home: Path
    folder: Path
    ingest: Result


@pytest.fixture(scope="session")
def notes(tmp_path_factory) -> Notes:
    """Two notes, one corrupt PDF and one binary file, ingested into the collection ``notes``."""
    folder = tmp_path_factory.mktemp("notes")
    (folder / "bees.md").write_text("# Bees\n\nHoney bees tell each other the direction of flowers with a "
                                    "waggle dance.\n")
    (folder / "tea.txt").write_text("Green tea is steeped at about 80 degrees Celsius for two minutes.\n")
    (folder / "broken.pdf").write_bytes(b"not a pdf at all")
    (folder / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    home = tmp_path_factory.mktemp("home")
    return Notes(home, folder, plait(home, "ingest", str(folder), "--collection", "notes"))
