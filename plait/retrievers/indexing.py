"""Incremental, idempotent, crash-safe ingestion: files in, chunks in the store, a report out.

The record (a SQLite table in the store's sidecar file, beside the collection) holds, per source
file, the SHA-256 of its bytes and the ids of its chunks. Chunk ids are hashes of (source, chunk
index, start offset, text), so the same file always gives the same ids. Then:

- an unchanged file is skipped without loading it (its hash matches);
- a changed file's chunks are rewritten; chunks it still has unchanged are not re-embedded, and
  chunks it lost are deleted;
- ``delete_missing=True`` removes the chunks of files that are gone from the folders ingested.

Crash safety. Each batch of files goes through four steps, each idempotent:
(1) the record notes, per file, every chunk id that may be in the store for it (old and new) as
"pending", in one transaction; (2) new chunks are upserted (Chroma and BM25); (3) ids no longer
wanted are deleted; (4) the record stores the new hash and ids and clears "pending", in one
transaction. Killed anywhere (even SIGKILL), the next run sees the file as changed or pending,
redoes it, and deletes everything in "pending" that is not wanted, so the store ends up exactly
as after one clean run: nothing duplicated, nothing missing, nothing stale.

Bad files (unreadable, binary, empty, undecodable, corrupt) are skipped and listed in the
report with the reason; the batch carries on. Progress bars (tqdm) show files and chunks.

Example::

    from plait.retrievers import ingest
    report = ingest(["docs/", "notes.md"], collection="handbook")
    print(report.summary())      # 12 files: 12 added, 0 updated, 0 unchanged ... 1 skipped
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from plait.messages import Document
from plait.retrievers.chroma import ChromaStore
from plait.retrievers.loaders import Loader, LoadError, find_files, load_file
from plait.retrievers.splitters import MarkdownHeaderSplitter, TextSplitter, TokenSplitter


@dataclass
class Skipped:
    """A file left out of ingestion and why."""

    path: str
    reason: str


@dataclass
class IngestReport:
    """What an ingestion run did."""

    files_added: int = 0
    files_updated: int = 0
    files_unchanged: int = 0
    files_deleted: int = 0
    chunks_written: int = 0
    chunks_reused: int = 0
    chunks_deleted: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def files_seen(self) -> int:
        return self.files_added + self.files_updated + self.files_unchanged + len(self.skipped)

    def summary(self) -> str:
        lines = [f"{self.files_seen} files: {self.files_added} added, {self.files_updated} updated, "
                 f"{self.files_unchanged} unchanged, {self.files_deleted} deleted, {len(self.skipped)} skipped; "
                 f"{self.chunks_written} chunks written, {self.chunks_reused} reused, "
                 f"{self.chunks_deleted} deleted in {self.seconds:.1f}s"]
        lines += [f"  skipped {s.path}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


def chunk_id(source: str, chunk: Document) -> str:
    """A chunk's stable id: the same file content always gives the same ids."""
    key = "\x1f".join([source, str(chunk.metadata.get("chunk")), str(chunk.metadata.get("start")), chunk.content])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class IndexRecord:
    """Per-source content hashes and chunk ids, in SQLite (a file, or memory when ``path`` is None)."""

    def __init__(self, path: str | None) -> None:
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path or ":memory:", check_same_thread=False, timeout=30)
        if path is not None:
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS ingest_files (source TEXT PRIMARY KEY, hash TEXT, "
                        "chunk_ids TEXT NOT NULL, pending TEXT)")
        self.db.commit()
        self._lock = threading.Lock()

    def get(self, source: str) -> tuple[str | None, list[str], list[str] | None]:
        """(hash, chunk ids, pending ids or None) for a source; (None, [], None) if unknown."""
        row = self.db.execute("SELECT hash, chunk_ids, pending FROM ingest_files WHERE source = ?",
                              (source,)).fetchone()
        if row is None:
            return None, [], None
        return row[0], json.loads(row[1]), json.loads(row[2]) if row[2] is not None else None

    def sources(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT source FROM ingest_files ORDER BY source")]

    def mark_pending(self, entries: dict[str, list[str]]) -> None:
        """Note, per source, every chunk id that may be in the store once the batch is (partly) written."""
        with self._lock, self.db:
            for source, ids in entries.items():
                _, old, pending = self.get(source)
                everything = sorted(set(old) | set(pending or []) | set(ids))
                self.db.execute("INSERT INTO ingest_files (source, hash, chunk_ids, pending) VALUES (?, NULL, ?, ?) "
                                "ON CONFLICT(source) DO UPDATE SET pending = excluded.pending",
                                (source, json.dumps(old), json.dumps(everything)))

    def mark_done(self, entries: dict[str, tuple[str, list[str]]]) -> None:
        with self._lock, self.db:
            for source, (digest, ids) in entries.items():
                self.db.execute("INSERT OR REPLACE INTO ingest_files VALUES (?, ?, ?, NULL)",
                                (source, digest, json.dumps(ids)))

    def forget(self, sources: Sequence[str]) -> None:
        with self._lock, self.db:
            self.db.executemany("DELETE FROM ingest_files WHERE source = ?", [(s,) for s in sources])

    def close(self) -> None:
        self.db.close()


class DefaultSplitter(TextSplitter):
    """Markdown by headers then tokens; everything else by tokens (the embedding model's max length)."""

    def __init__(self, embeddings: Any = None, *, chunk_size: int | None = None, chunk_overlap: int = 32) -> None:
        self.tokens = TokenSplitter(embeddings, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
        self.markdown = MarkdownHeaderSplitter(self.tokens)

    def _doc_spans(self, doc: Document) -> list[tuple[tuple[int, int], dict[str, Any]]]:
        if doc.metadata.get("format") == "markdown":
            return self.markdown._doc_spans(doc)
        return self.tokens._doc_spans(doc)

    def spans(self, text: str) -> list[tuple[int, int]]:
        return self.tokens.spans(text)


@dataclass
class _Pending:
    source: str
    digest: str
    chunks: list[Document]
    old_ids: list[str]
    reusable: set[str]
    existed: bool


def _advance(bar: Any, n: int, _future: Any) -> None:
    bar.update(n)


def _progress(enabled: bool, **kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(disable=not enabled, file=sys.stderr, dynamic_ncols=True, **kwargs)


class Indexer:
    """Ingests files into a :class:`ChromaStore` incrementally. See the module docstring.

    Args:
        store: where chunks go (its sidecar file also holds the record).
        splitter: default :class:`DefaultSplitter` on the store's embedding model.
        loaders: extra or replacement loaders by suffix, e.g. ``{".jsonl": JSONLLoader(("title", "text"))}``.
        batch_chunks: chunks gathered (across files) before embedding and writing them together.
        progress: show progress bars.
    """

    def __init__(self, store: ChromaStore, *, splitter: TextSplitter | None = None,
                 loaders: dict[str, Loader] | None = None, batch_chunks: int = 512, progress: bool = True) -> None:
        self.store = store
        self.splitter = splitter
        self.loaders = loaders
        self.batch_chunks = batch_chunks
        self.progress = progress
        self._record: IndexRecord | None = None

    @property
    def record(self) -> IndexRecord:
        if self._record is None:
            self._record = IndexRecord(self.store.sidecar)
        return self._record

    def _splitter(self) -> TextSplitter:
        if self.splitter is None:
            self.splitter = DefaultSplitter(self.store.embeddings)
        return self.splitter

    def ingest(self, paths: str | Path | Sequence[str | Path], *, glob: str | Sequence[str] = "**/*",
               exclude: Sequence[str] = (), delete_missing: bool = False) -> IngestReport:
        """Bring the store in line with the files under ``paths``. Returns what was done."""
        t0 = time.perf_counter()
        report = IngestReport()
        files = find_files(paths, glob=glob, exclude=exclude)
        batch: list[_Pending] = []
        with _progress(self.progress, total=len(files), desc="files", unit="file") as bar:
            for path in files:
                item = self._prepare(path, report)
                if item is not None:
                    batch.append(item)
                if sum(len(p.chunks) for p in batch) >= self.batch_chunks:
                    self._flush(batch, report)
                    batch = []
                bar.update(1)
            self._flush(batch, report)
        if delete_missing:
            self._delete_missing(paths, {str(f) for f in files}, report)
        report.seconds = time.perf_counter() - t0
        return report

    def _prepare(self, path: Path, report: IngestReport) -> _Pending | None:
        source = str(path)
        try:
            digest = file_hash(path)
        except OSError as e:
            report.skipped.append(Skipped(source, f"cannot read the file ({e.strerror or e})"))
            return None
        old_digest, old_ids, pending = self.record.get(source)
        if old_digest == digest and pending is None:
            report.files_unchanged += 1
            return None
        try:
            docs = load_file(path, self.loaders)
        except LoadError as e:
            report.skipped.append(Skipped(source, e.reason))
            return None
        chunks = self._splitter().split_documents(docs)
        if not chunks:
            report.skipped.append(Skipped(source, "no text left after splitting"))
            return None
        for c in chunks:
            c.id = chunk_id(source, c)
        # Chunks the store certainly holds already: only when the last run on this file finished.
        reusable = set(old_ids) if pending is None else set()
        return _Pending(source, digest, chunks, old_ids, reusable, existed=old_digest is not None)

    def _flush(self, batch: list[_Pending], report: IngestReport) -> None:
        if not batch:
            return
        # (1) note every id that may exist for these files, before touching the store
        self.record.mark_pending({p.source: [c.id or "" for c in p.chunks] for p in batch})
        # (2) write the chunks that are new
        to_write = [c for p in batch for c in p.chunks if c.id not in p.reusable]
        self._write(to_write)
        # (3) delete what is no longer wanted (including leftovers of an interrupted run)
        stale: list[str] = []
        for p in batch:
            _, _, pending = self.record.get(p.source)
            wanted = {c.id for c in p.chunks}
            stale += [i for i in (pending or []) if i not in wanted]
        if stale:
            self.store.delete(stale)
        # (4) commit the new state
        self.record.mark_done({p.source: (p.digest, [c.id or "" for c in p.chunks]) for p in batch})
        report.chunks_written += len(to_write)
        report.chunks_reused += sum(len(p.chunks) for p in batch) - len(to_write)
        report.chunks_deleted += len(set(stale))
        report.files_updated += sum(1 for p in batch if p.existed)
        report.files_added += sum(1 for p in batch if not p.existed)

    def _write(self, chunks: list[Document], step: int = 256) -> None:
        """Embed (longest texts together, so batches pad little) and upsert, with a progress bar.

        The store write of one part runs in a worker thread while the next part is embedded
        (both release the GIL), and is waited for before the following write, so writes stay in order.
        """
        if not chunks:
            return
        from concurrent.futures import Future, ThreadPoolExecutor

        emb = self.store.embeddings
        order = sorted(range(len(chunks)), key=lambda i: -len(chunks[i].content))
        with _progress(self.progress and len(chunks) > step, total=len(chunks), desc="chunks", unit="chunk",
                       leave=False) as bar, ThreadPoolExecutor(1) as writer:
            pending: Future[Any] | None = None
            for start in range(0, len(order), step):
                part = [chunks[i] for i in order[start:start + step]]
                texts = [c.content for c in part]
                vectors = emb.embed_array(texts)
                if pending is not None:
                    pending.result()
                pending = writer.submit(self.store.upsert, part, embeddings=vectors)
                pending.add_done_callback(partial(_advance, bar, len(part)))
            if pending is not None:
                pending.result()

    def remove(self, sources: Sequence[str | Path]) -> int:
        """Delete the chunks of these source files from the store and the record; returns chunks deleted."""
        names = [str(Path(s).resolve()) for s in sources]
        ids: list[str] = []
        for name in names:
            _, old, pending = self.record.get(name)
            ids += sorted(set(old) | set(pending or []))
        if ids:
            self.store.delete(ids)
        self.record.forget(names)
        return len(ids)

    def _delete_missing(self, paths: str | Path | Sequence[str | Path], found: set[str],
                        report: IngestReport) -> None:
        items = [paths] if isinstance(paths, (str, Path)) else list(paths)
        roots = [Path(p).expanduser().resolve() for p in items]
        gone = []
        for source in self.record.sources():
            src = Path(source)
            under = any(src == r or r in src.parents for r in roots)
            if under and source not in found:
                gone.append(source)
        if gone:
            report.chunks_deleted += self.remove(gone)
            report.files_deleted += len(gone)


def ingest(paths: str | Path | Sequence[str | Path], *, collection: str = "default",
           store: ChromaStore | None = None, splitter: TextSplitter | None = None,
           loaders: dict[str, Loader] | None = None, glob: str | Sequence[str] = "**/*",
           exclude: Sequence[str] = (), delete_missing: bool = False, progress: bool = True) -> IngestReport:
    """Ingest files and folders into a collection (default: :func:`plait.defaults.default_store`).

    Args:
        paths: files and/or folders.
        collection: the collection of the default store, when ``store`` is not given.
        store: a :class:`ChromaStore` to use instead of the default embedded one.
        splitter, loaders: see :class:`Indexer`.
        glob, exclude: which files under folders to take (``"**/*.md"``) and leave out.
        delete_missing: remove chunks of files that disappeared from these folders.
        progress: show progress bars.
    """
    if store is None:
        from plait.defaults import default_store

        store = default_store(collection)
    return Indexer(store, splitter=splitter, loaders=loaders, progress=progress).ingest(
        paths, glob=glob, exclude=exclude, delete_missing=delete_missing)
