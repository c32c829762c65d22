"""Incremental ingestion: idempotent re-runs, changed and deleted files, bad files, and SIGKILL recovery."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from plait.retrievers.chroma import ChromaStore
from plait.retrievers.indexing import Indexer, IngestReport
from plait.retrievers.splitters import TokenSplitter
from tests.retrievers.pdfgen import write_pdf

pytestmark = pytest.mark.integration

TOPICS = ["rivers", "volcanoes", "bees", "glaciers", "comets", "forests", "deserts", "coral reefs"]


def make_corpus(root: Path, n: int = 12) -> Path:
    rng = random.Random(7)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        sentences = [f"Fact {j} about {topic} number {i}: {' '.join(rng.sample(TOPICS, 3))} interact in season {j}."
                     for j in range(10 if i == 1 else rng.randint(2, 8))]
        suffix = ".md" if i % 3 == 0 else ".txt"
        body = (f"# {topic.title()} {i}\n\n" if suffix == ".md" else "") + "\n".join(sentences)
        (root / f"doc{i:02d}{suffix}").write_text(body, encoding="utf-8")
    return root


def make_indexer(store: ChromaStore, embeddings) -> Indexer:
    return Indexer(store, splitter=TokenSplitter(embeddings, chunk_size=64, chunk_overlap=8),
                   batch_chunks=8, progress=False)


def snapshot(store: ChromaStore, indexer: Indexer) -> dict:
    """Everything that must match between two stores: chunks, BM25 twin and the record."""
    got = store.collection.get(include=["documents", "metadatas"])
    chunks = sorted(zip(got["ids"], got["documents"], [sorted(m.items()) for m in got["metadatas"]], strict=True))
    record = {s: (h, sorted(ids), pending) for s in indexer.record.sources()
              for h, ids, pending in [indexer.record.get(s)]}
    assert store.bm25 is not None
    return {"chunks": chunks, "bm25": store.bm25.ids(), "record": record}


@pytest.fixture
def data(tmp_path):
    return make_corpus(tmp_path / "data")


def test_rerun_writes_nothing_and_changes_are_tracked(data, tmp_path, embeddings):
    store = ChromaStore("docs", path=tmp_path / "db", embeddings=embeddings)
    indexer = make_indexer(store, embeddings)
    first = indexer.ingest(data)
    assert first.files_added == 12 and first.chunks_written == store.count() > 12 and not first.skipped
    again = indexer.ingest(data)
    assert (again.files_unchanged, again.chunks_written, again.chunks_deleted) == (12, 0, 0)

    # a changed file: only its chunks change; chunks it kept are reused, not re-embedded
    target = data / "doc01.txt"
    lines = target.read_text(encoding="utf-8").split("\n")
    target.write_text("\n".join(lines + ["A brand new closing sentence about auroras."]), encoding="utf-8")
    changed = indexer.ingest(data)
    assert changed.files_updated == 1 and changed.files_unchanged == 11
    assert 0 < changed.chunks_written <= 2 and changed.chunks_reused > 0
    assert store.as_retriever("bm25", k=1).invoke("auroras")[0].metadata["source"] == str(target)

    # a deleted file: kept unless delete_missing
    (data / "doc02.txt").unlink()
    before = store.count()
    assert indexer.ingest(data).files_deleted == 0 and store.count() == before
    gone = indexer.ingest(data, delete_missing=True)
    assert gone.files_deleted == 1 and store.count() == before - gone.chunks_deleted
    assert not store.get(filter={"source": str(data / "doc02.txt")})

    # the result equals one clean run over the final files
    clean_store = ChromaStore("docs", path=tmp_path / "clean", embeddings=embeddings)
    clean = make_indexer(clean_store, embeddings)
    clean.ingest(data)
    assert snapshot(store, indexer) == snapshot(clean_store, clean)


def test_bad_files_are_skipped_and_reported(tmp_path, embeddings):
    data = make_corpus(tmp_path / "data", n=3)
    (data / "empty.txt").write_text("", encoding="utf-8")
    (data / "blob.bin").write_bytes(os.urandom(64) + b"\x00")
    (data / "latin.txt").write_bytes("na\xefve".encode("latin-1"))
    (data / "broken.pdf").write_bytes(b"%PDF-1.7 garbage")
    write_pdf(data / "good.pdf", ["Glaciers carve valleys.", "Comets have tails."])
    store = ChromaStore.in_memory("bad-files-test", embeddings=embeddings)
    report = make_indexer(store, embeddings).ingest(data)
    assert report.files_added == 4  # 3 texts + the good PDF
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(reasons) == {"empty.txt", "blob.bin", "latin.txt", "broken.pdf"}
    assert "skipped" in report.summary() and "broken.pdf" in report.summary()
    pages = {d.metadata["page"] for d in store.get(filter={"format": "pdf"})}
    assert pages == {1, 2}
    store.clear()


def test_interrupted_batch_is_repaired_even_if_the_file_changed_meanwhile(data, tmp_path, embeddings, monkeypatch):
    store = ChromaStore("docs", path=tmp_path / "db", embeddings=embeddings)
    indexer = make_indexer(store, embeddings)
    indexer.ingest(data)
    target = data / "doc05.txt"
    target.write_text("Version two.\n" + "Bees dance to share where flowers are. " * 30, encoding="utf-8")

    calls = {"n": 0}
    real_delete = store.delete

    def crash_on_delete(*args, **kwargs):
        calls["n"] += 1
        raise RuntimeError("simulated crash after the upsert, before stale chunks are deleted")

    monkeypatch.setattr(store, "delete", crash_on_delete)
    with pytest.raises(RuntimeError, match="simulated crash"):
        indexer.ingest(data)
    monkeypatch.setattr(store, "delete", real_delete)
    # the file changes again before the re-run: version-two chunks must not linger
    target.write_text("Version three: deserts bloom after rare rain.", encoding="utf-8")
    indexer.ingest(data)

    clean_store = ChromaStore("docs", path=tmp_path / "clean", embeddings=embeddings)
    clean = make_indexer(clean_store, embeddings)
    clean.ingest(data)
    assert snapshot(store, indexer) == snapshot(clean_store, clean)
    assert not [d for d in store.get() if "Version two" in d.content or "dance" in d.content]
    assert store.get(filter={"source": str(target)})[0].content.startswith("Version three")


def test_sigkill_mid_ingestion_then_rerun_equals_one_clean_run(data, tmp_path, embeddings):
    db = tmp_path / "db"
    child = Path(__file__).with_name("ingest_child.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, str(child), str(data), str(db), "docs"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, text=True)
    assert proc.stdout is not None
    writes = 0
    try:
        for line in proc.stdout:
            if line.startswith("wrote"):
                writes += 1
                if writes == 2:  # part way: some batches done, the next one in flight
                    proc.send_signal(signal.SIGKILL)
                    break
            if line.startswith("done"):
                pytest.fail("the child finished before it could be killed; give it more to do")
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL

    store = ChromaStore("docs", path=db, embeddings=embeddings)
    indexer = make_indexer(store, embeddings)
    assert 0 < store.count()
    report: IngestReport = indexer.ingest(data)
    assert report.files_unchanged > 0 and report.files_added + report.files_updated > 0
    rerun = indexer.ingest(data)
    assert rerun.chunks_written == 0 and rerun.files_unchanged == 12

    clean_store = ChromaStore("docs", path=tmp_path / "clean", embeddings=embeddings)
    clean = make_indexer(clean_store, embeddings)
    clean.ingest(data)
    assert snapshot(store, indexer) == snapshot(clean_store, clean)
    assert store.count() == clean_store.count() == len(set(store.ids()))


def test_a_file_edited_while_it_is_indexed_is_redone_never_recorded_with_other_chunks(data, tmp_path, embeddings,
                                                                                     monkeypatch):
    store = ChromaStore("docs", path=tmp_path / "db", embeddings=embeddings)
    indexer = make_indexer(store, embeddings)
    target = data / "doc04.txt"
    edits = iter(["Edited once: comets shed dust.", "Edited twice: reefs bleach in warm water."])
    real_upsert = store.upsert

    def upsert_then_edit(docs, **kwargs):  # the file changes after its chunks were read and written
        ids = real_upsert(docs, **kwargs)
        if any(d.metadata["source"] == str(target) for d in docs):
            target.write_text(next(edits, target.read_text(encoding="utf-8")), encoding="utf-8")
        return ids

    monkeypatch.setattr(store, "upsert", upsert_then_edit)
    report = indexer.ingest(data)
    assert not report.skipped and report.files_added == 12
    monkeypatch.setattr(store, "upsert", real_upsert)
    digest, ids, pending = indexer.record.get(str(target))
    assert digest == hashlib.sha256(target.read_bytes()).hexdigest() and pending is None
    assert [d.content for d in store.get(ids)] == ["Edited twice: reefs bleach in warm water."]

    clean_store = ChromaStore("docs", path=tmp_path / "clean", embeddings=embeddings)
    clean = make_indexer(clean_store, embeddings)
    clean.ingest(data)
    assert snapshot(store, indexer) == snapshot(clean_store, clean)

    # a file that never stops changing is reported, and its record stays pending (redone next time)
    monkeypatch.setattr("plait.retrievers.indexing.file_hash", lambda path, _n=iter(range(10**6)): str(next(_n)))
    target.write_text("Edited again.", encoding="utf-8")
    report = indexer.ingest(target)
    assert [s.path for s in report.skipped] == [str(target)] and "kept changing" in report.skipped[0].reason
    assert indexer.record.get(str(target))[2] is not None
