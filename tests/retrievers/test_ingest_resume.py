"""A big one-line file is ingested as a stream, committed in batches, and resumed after a SIGKILL.

The child (``ingest_child.py --big``) ingests a one-line file with small windows and batches; the
parent watches the ingestion record until a few batches past the first window are committed,
kills the child with SIGKILL, resumes in this process and checks that the committed chunks were
not embedded again and that the index equals one clean run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plait.retrievers.chroma import ChromaStore
from plait.retrievers.indexing import Indexer
from plait.retrievers.splitters import MarkdownHeaderSplitter, TokenSplitter
from tests.retrievers.test_indexing import snapshot

pytestmark = pytest.mark.integration

CHILD = Path(__file__).with_name("ingest_child.py")
WINDOW = 4_000
WORDS = ["glacier", "valley", "river", "silt", "comet", "tail", "forest", "canopy", "desert", "rain",
         "coral", "reef", "bee", "dance", "volcano", "ash"]


def one_line(n_words: int) -> str:
    rng = random.Random(3)
    out = []
    for i in range(n_words):
        out.append(rng.choice(WORDS) + ("." if i % 13 == 12 else "," if i % 7 == 6 else ""))
    return " ".join(out)


def make_indexer(store: ChromaStore) -> Indexer:
    splitter = TokenSplitter(store.embeddings, chunk_size=64, chunk_overlap=8)
    splitter.window = WINDOW
    return Indexer(store, splitter=splitter, batch_chunks=8, progress=False)


def committed(sidecar: Path, source: str) -> dict | None:
    """The record's progress for ``source`` as another process sees it (None before the first batch)."""
    if not sidecar.exists():
        return None
    db = sqlite3.connect(f"file:{sidecar}?mode=ro", uri=True, timeout=30)
    try:
        row = db.execute("SELECT progress FROM ingest_files WHERE source = ?", (source,)).fetchone()
    except sqlite3.OperationalError:  # the table is being created
        return None
    finally:
        db.close()
    return json.loads(row[0]) if row and row[0] else None


def test_sigkill_mid_file_resumes_from_the_last_committed_batch(tmp_path, embeddings):
    big = tmp_path / "big.txt"
    big.write_text(one_line(3_000), encoding="utf-8")  # ~20 kB on one line: 5 windows, ~10 batches
    db = tmp_path / "db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(CHILD), "--big", str(big), str(db), "docs", str(WINDOW)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    sidecar = db / "plait" / "docs.sqlite"
    progress = None
    try:
        while proc.poll() is None:  # watch the record: kill once it resumes past the first window
            progress = committed(sidecar, str(big))
            if progress and progress["resume"] and progress["resume"][0] > WINDOW:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the child finished before it was killed; give it more text"
    assert progress is not None
    done_before = len(progress["ids"])

    store = ChromaStore("docs", path=db, embeddings=embeddings)
    report = make_indexer(store).ingest(big)
    assert report.files_resumed == 1 and report.files_added == 1 and not report.skipped

    clean_store = ChromaStore("docs", path=tmp_path / "clean", embeddings=embeddings)
    clean = make_indexer(clean_store)
    clean_report = clean.ingest(big)
    total = clean_report.chunks_written
    # the committed batches were not embedded again (at most the one batch in flight is redone)
    assert total - done_before <= report.chunks_written <= total - done_before + 8
    assert snapshot(store, make_indexer(store)) == snapshot(clean_store, clean)
    assert store.count() == total == len(set(store.ids()))
    assert make_indexer(store).ingest(big).files_unchanged == 1


def test_a_crash_mid_markdown_file_redoes_it_without_embedding_the_committed_chunks_again(tmp_path, embeddings,
                                                                                         monkeypatch):
    # Markdown cannot resume mid-text (sections), so its chunks are made again and those stored are skipped
    doc = tmp_path / "guide.md"
    doc.write_text("\n\n".join(f"# Part {i}\n\n{one_line(120)}" for i in range(6)), encoding="utf-8")
    store = ChromaStore("docs", path=tmp_path / "db", embeddings=embeddings)

    def make_indexer(store: ChromaStore) -> Indexer:
        splitter = MarkdownHeaderSplitter(TokenSplitter(store.embeddings, chunk_size=64, chunk_overlap=8))
        return Indexer(store, splitter=splitter, batch_chunks=8, progress=False)

    real_upsert, calls = store.upsert, {"n": 0}

    def crash_on_third(docs, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return real_upsert(docs, **kwargs)

    monkeypatch.setattr(store, "upsert", crash_on_third)
    with pytest.raises(RuntimeError, match="simulated crash"):
        make_indexer(store).ingest(doc)
    monkeypatch.setattr(store, "upsert", real_upsert)
    progress = make_indexer(store).record.progress(str(doc))
    assert progress is not None and progress["resume"] is None and len(progress["ids"]) == 16

    report = make_indexer(store).ingest(doc)
    clean_store = ChromaStore("docs", path=tmp_path / "clean", embeddings=embeddings)
    clean = make_indexer(clean_store)
    total = clean.ingest(doc).chunks_written
    assert report.files_resumed == 1 and report.chunks_written == total - 16 and report.chunks_reused == 16
    assert snapshot(store, make_indexer(store)) == snapshot(clean_store, clean)
    assert all(not c.content.startswith("# Part") or "\n\n" in c.content for c in store.get())  # no bare heading
