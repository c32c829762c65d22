"""Ingestion under concurrent writers, edits, renames, links and bad files (issue 18, items 10-15).

Each test drives the real ``plait ingest`` command (and, where a run must be paused or hold the
lock, a real child process: ``ingest_child.py``) on its own data directory, then reads what the
store and the record hold.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from plait.retrievers.chroma import ChromaStore
from plait.retrievers.ingest_record import IndexRecord
from tests.app_support import ROOT
from tests.cli.conftest import Result, assert_clean_error, plait

pytestmark = pytest.mark.integration

CHILD = Path(__file__).with_name("ingest_child.py")


def env(home: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    environment.update({"PLAIT_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                        "PYTHONPATH": str(ROOT)})
    return environment


def ingest(home: Path, *args: str, collection: str = "docs", json_out: bool = True) -> tuple[Result, dict]:
    r = plait(home, "ingest", *args, "--collection", collection, *(["--json"] if json_out else []))
    report = json.loads(r.out[r.out.index("{"):]) if json_out and "{" in r.out else {}
    return r, report


def stored(home: Path, embeddings, collection: str = "docs") -> dict[str, list[str]]:
    """Source -> sorted chunk texts, as the store holds them."""
    store = ChromaStore(collection, path=home / "chroma", embeddings=embeddings)
    out: dict[str, list[str]] = {}
    for doc in store.get():
        out.setdefault(doc.metadata["source"], []).append(doc.content)
    return {source: sorted(texts) for source, texts in sorted(out.items())}


def record(home: Path, collection: str = "docs") -> dict[str, tuple]:
    rec = IndexRecord(str(home / "chroma" / "plait" / f"{collection}.sqlite"))
    try:
        return {s: rec.get(s) for s in rec.sources()}
    finally:
        rec.close()


def reasons(report: dict) -> dict[str, str]:
    return {Path(s["path"]).name: s["reason"] for s in report["skipped"]}


def sentences(tag: str, n: int = 12) -> str:
    return "\n".join(f"Version {tag} sentence {i}: glaciers carve valleys and rivers carry silt {i} times."
                     for i in range(n))


def test_two_ingests_wait_for_each_other_and_an_edit_meanwhile_is_redone(tmp_path, embeddings):
    home, data = tmp_path / "home", tmp_path / "data"
    data.mkdir()
    doc = data / "doc.txt"
    doc.write_text(sentences("one"), encoding="utf-8")
    assert ingest(home, str(data))[0].code == 0
    doc.write_text(sentences("two", 30), encoding="utf-8")
    # run A: reads v2, writes its chunks, then stops before committing (holding the writer lock)
    a = subprocess.Popen([sys.executable, str(CHILD), "--pause-after-write", str(data), "docs"], env=env(home),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert a.stdout is not None and a.stdin is not None
    try:
        assert a.stdout.readline().startswith("wrote")
        doc.write_text(sentences("three", 20), encoding="utf-8")  # edited while A embeds
        busy = plait(home, "ingest", str(data), "--collection", "docs", "--no-wait")
        assert_clean_error(busy, "another ingest of collection 'docs' is running", f"pid {a.pid}", code=1)
        # run B waits for A, saying so
        b = subprocess.Popen([sys.executable, "-m", "plait.cli", "ingest", str(data), "--collection", "docs"],
                             env=env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        assert b.stderr is not None
        waiting = ""
        for line in b.stderr:
            if "waiting for another ingest" in line:
                waiting = line
                break
        assert waiting.strip() == f"waiting for another ingest of collection 'docs' (pid {a.pid})"
        a.stdin.write("go\n")
        a.stdin.flush()
        a_out = a.communicate()[0]
        b_out, _ = b.communicate()
    finally:
        a.kill()
    assert a.returncode == 0 and "1 updated" in a_out, a_out  # A saw the edit and indexed v3 instead
    assert b.returncode == 0 and "1 unchanged" in b_out, b_out

    clean = tmp_path / "clean"
    assert ingest(clean, str(data))[0].code == 0
    assert stored(home, embeddings) == stored(clean, embeddings)
    assert all("Version three" in t for t in stored(home, embeddings)[str(doc)])
    digest, ids, pending = record(home)[str(doc)]
    assert digest == hashlib.sha256(doc.read_bytes()).hexdigest() and pending is None
    assert len(ids) == len(stored(home, embeddings)[str(doc)])


def test_delete_missing_only_deletes_what_is_gone_and_prune_cleans_renamed_folders(tmp_path, embeddings):
    home, data = tmp_path / "home", tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "old").mkdir()
    (data / "a.txt").write_text(sentences("a", 3), encoding="utf-8")
    (data / "long.txt").write_text(sentences("long", 3), encoding="utf-8")
    (data / "sub" / "long.txt").write_text(sentences("sub-long", 3), encoding="utf-8")
    (data / "old" / "x.txt").write_text(sentences("x", 3), encoding="utf-8")
    r, report = ingest(home, str(data))
    assert r.code == 0 and report["files_added"] == 4, r.text
    # a narrower glob with --delete-missing: files it leaves out still exist, so nothing is deleted
    r, report = ingest(home, str(data), "--glob", "**/long.txt", "--delete-missing")
    assert r.code == 0 and report["files_deleted"] == 0 and report["chunks_deleted"] == 0, r.text
    assert len(stored(home, embeddings)) == 4

    # a renamed folder: the old name is gone, so --delete-missing on it removes its files
    (data / "old").rename(data / "new")
    assert ingest(home, str(data))[1]["files_added"] == 1
    assert str(data / "old" / "x.txt") in stored(home, embeddings)
    r, report = ingest(home, str(data / "old"), "--delete-missing")
    assert r.code == 0 and report["files_deleted"] == 1, r.text
    # renamed again; --prune-missing (no path) removes every source that no longer exists
    (data / "new").rename(data / "newer")
    (data / "a.txt").unlink()
    assert ingest(home, str(data))[1]["files_added"] == 1
    r, report = ingest(home, "--prune-missing")
    assert r.code == 0 and report["files_deleted"] == 2, r.text  # new/x.txt and a.txt

    clean = tmp_path / "clean"
    ingest(clean, str(data))
    assert stored(home, embeddings) == stored(clean, embeddings)
    assert set(record(home)) == set(stored(home, embeddings))


def test_links_outside_are_followed_only_when_asked_and_go_when_the_link_goes(tmp_path, embeddings):
    home, data, outside = tmp_path / "home", tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("The private key lives in this file outside the folder.", encoding="utf-8")
    (data / "note.txt").write_text("Bees dance to point at flowers.", encoding="utf-8")
    (data / "link.txt").symlink_to(outside / "secret.txt")
    (data / "alias.txt").symlink_to(data / "note.txt")  # inside: the file is indexed once, under its own name
    r, report = ingest(home, str(data))
    assert r.code == 0, r.text
    assert "outside the folders being ingested" in reasons(report)["link.txt"]
    assert "--follow-links" in reasons(report)["link.txt"]
    assert list(stored(home, embeddings)) == [str(data / "note.txt")]

    r, report = ingest(home, str(data), "--follow-links")
    assert r.code == 0 and report["files_added"] == 1, r.text
    chunks = stored(home, embeddings)
    assert chunks[str(data / "link.txt")] == ["The private key lives in this file outside the folder."]

    (data / "link.txt").unlink()
    r, report = ingest(home, str(data), "--delete-missing")
    assert r.code == 0 and report["files_deleted"] == 1, r.text
    assert list(stored(home, embeddings)) == [str(data / "note.txt")]


def test_files_that_turn_binary_or_empty_lose_their_chunks_and_bad_jsonl_lines_are_reported(tmp_path,
                                                                                             embeddings):
    home, data = tmp_path / "home", tmp_path / "data"
    data.mkdir()
    for name in ("keep.txt", "bin.txt", "empty.txt"):
        (data / name).write_text(sentences(name, 3), encoding="utf-8")
    (data / "records.jsonl").write_text('{"text": "Comets have tails of dust."}\n{broken json\n'
                                        '{"text": "Coral reefs shelter fish."}\n', encoding="utf-8")
    r, _ = ingest(home, str(data), json_out=False)
    assert r.code == 0 and "4 added" in r.out, r.text
    assert f"skipped part of {data / 'records.jsonl'}:2: line 2 is not valid JSON" in r.out, r.out
    assert sorted(stored(home, embeddings)[str(data / "records.jsonl")]) == [
        "Comets have tails of dust.", "Coral reefs shelter fish."]

    (data / "bin.txt").write_bytes(b"\x00\x01binary now")
    (data / "empty.txt").write_text("", encoding="utf-8")
    r, report = ingest(home, str(data))
    assert r.code == 0, r.text
    why = reasons(report)
    assert "binary" in why["bin.txt"] and "old chunks were removed" in why["bin.txt"]
    assert "empty" in why["empty.txt"] and "old chunks were removed" in why["empty.txt"]
    assert sorted(Path(s).name for s in stored(home, embeddings)) == ["keep.txt", "records.jsonl"]
    assert sorted(Path(s).name for s in record(home)) == ["keep.txt", "records.jsonl"]


def _without_root_powers() -> None:
    """In the child: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so file modes apply to root too."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_folders_link_loops_dangling_links_and_fifos_are_reported_never_hang(tmp_path, embeddings):
    home, data = tmp_path / "home", tmp_path / "data"
    (data / "locked").mkdir(parents=True)
    (data / "good.txt").write_text("Deserts bloom after rare rain.", encoding="utf-8")
    (data / "locked" / "inside.txt").write_text("Hidden by permissions.", encoding="utf-8")
    (data / "loop").symlink_to("loop")
    (data / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    os.mkfifo(data / "pipe.txt")
    (data / "locked").chmod(0)
    try:
        proc = subprocess.run([sys.executable, "-m", "plait.cli", "ingest", str(data), "--collection", "docs",
                               "--json"], env=env(home), capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL,
                              preexec_fn=_without_root_powers if os.geteuid() == 0 else None)
    finally:
        (data / "locked").chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    why = reasons(report)
    assert report["files_added"] == 1
    assert "cannot list the folder" in why["locked"] and "not indexed" in why["locked"]
    assert "symbolic link loop" in why["loop"]
    assert "broken symbolic link" in why["dangling.txt"]
    assert "named pipe" in why["pipe.txt"]
    # named directly, a FIFO is refused at once: every file skipped, exit 1, no traceback
    r = plait(home, "ingest", str(data / "pipe.txt"), "--collection", "docs")
    assert_clean_error(r, "every file was skipped", code=1)
    assert "named pipe" in r.out
    assert list(stored(home, embeddings)) == [str(data / "good.txt")]
