"""Incremental, idempotent, crash-safe, streaming ingestion: files in, chunks in the store, a report out.

The record (:class:`~plait.retrievers.ingest_record.IndexRecord`, a SQLite table in the store's
sidecar file) holds, per source file, the SHA-256 of its bytes and the ids of its chunks. Chunk
ids are hashes of (source, chunk index, start offset, text), so the same file always gives the
same ids. Then:

- an unchanged file is skipped without loading it (its hash matches);
- a changed file's chunks are rewritten; chunks it still has unchanged are not re-embedded, and
  chunks it lost are deleted;
- a file that became binary, empty or otherwise unusable is reported and its old chunks removed;
- ``delete_missing=True`` removes the chunks of files under the paths given that no longer exist
  on disk (a file that exists but is left out by ``glob`` is kept); ``prune_missing=True`` does
  that for every source of the collection, wherever it was.

One writer per collection. Each run holds the collection's writer lock
(:class:`~plait.retrievers.ingest_lock.CollectionLock`, an OS file lock the kernel drops if the
process dies): a second ingest waits, saying "waiting for another ingest of collection X (pid N)",
or with ``wait=False`` raises :class:`~plait.retrievers.ingest_lock.IngestBusy`.

Streaming. A file is read, split and written as a stream (:func:`~plait.retrievers.loaders.stream_file`,
:meth:`~plait.retrievers.splitters.TextSplitter.stream_chunks`): chunks are gathered across files
into batches of ``batch_chunks``, embedded and committed batch by batch, so a 20 MB file takes
about as much memory as a small one, and a big file is committed part by part.

Crash safety. Each batch goes through these steps, each idempotent:
(1) the record notes, per file, every chunk id that may be in the store for it (old and new) as
"pending", in one transaction; (2) new chunks are upserted (Chroma and the lexical index);
(3) for a file still being read, the record notes the ids now stored and where splitting can
resume ("progress"); for a file read to its end, its hash is checked again (a file edited while
it was indexed is redone, never recorded with chunks of another version), ids no longer wanted
are deleted, and the record stores the new hash and ids and clears "pending" and "progress".
Killed anywhere (even SIGKILL), the next run sees the file as changed or pending, resumes a big
file from its last committed batch (or regenerates its chunks and skips those stored), and
deletes everything pending that is not wanted: the store ends up exactly as after one clean run.

Bad files (unreadable, binary, empty, undecodable, corrupt, not regular files, broken links,
unreadable folders) are skipped and listed in the report with the reason; a bad line of a JSON
Lines file is skipped and listed (``file:line``) and the rest indexed. Progress bars (tqdm).

Example::

    from plait.retrievers import ingest
    report = ingest(["docs/", "notes.md"], collection="handbook")
    print(report.summary())      # 12 files: 12 added, 0 updated, 0 unchanged ... 1 skipped
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from plait.messages import Document
from plait.retrievers.chroma import ChromaStore
from plait.retrievers.discovery import discover
from plait.retrievers.ingest_files import chunk_id, file_hash, gone, source_name
from plait.retrievers.ingest_lock import CollectionLock, IngestBusy
from plait.retrievers.ingest_record import IndexRecord
from plait.retrievers.ingest_report import IngestReport, Skipped
from plait.retrievers.loaders import Loader, LoadError, Problem, stream_file
from plait.retrievers.splitters import (
    MarkdownHeaderSplitter,
    Piece,
    Resume,
    TextSplitter,
    TextStream,
    TokenSplitter,
)

__all__ = ["DefaultSplitter", "IndexRecord", "Indexer", "IngestBusy", "IngestReport", "Skipped", "chunk_id",
           "file_hash", "ingest"]

RETRIES = 2  # a file that changes while it is indexed is redone this many times in one run


class DefaultSplitter(TextSplitter):
    """Markdown by headers then tokens; everything else by tokens (the embedding model's max length)."""

    def __init__(self, embeddings: Any = None, *, chunk_size: int | None = None, chunk_overlap: int = 32) -> None:
        self.tokens = TokenSplitter(embeddings, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
        self.markdown = MarkdownHeaderSplitter(self.tokens)

    def __repr__(self) -> str:
        return f"DefaultSplitter({self.tokens!r})"

    def _stream(self, blocks: Iterable[str], start: int, metadata: dict[str, Any]) -> Iterator[Piece]:
        if metadata.get("format") == "markdown":
            return self.markdown._stream(blocks, start, metadata)
        return self.tokens._stream(blocks, start, metadata)

    def spans(self, text: str) -> list[tuple[int, int]]:
        return self.tokens.spans(text)


@dataclass
class _File:
    """A file being indexed: its chunks so far (in order), which of them the store holds already."""

    path: Path
    source: str
    digest: str
    existed: bool
    reusable: set[str]
    ids: dict[str, None] = field(default_factory=dict)  # every chunk id so far, in order
    batch: list[Document] = field(default_factory=list)  # chunks not yet committed
    resume: Resume | None = None  # where splitting resumes to give the last chunk in ``batch`` again
    complete: bool = False


def _advance(bar: Any, n: int, _future: Any) -> None:
    bar.update(n)


def _progress(enabled: bool, **kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(disable=not enabled, file=sys.stderr, dynamic_ncols=True, **kwargs)


class Indexer:
    """Ingests files into a :class:`ChromaStore` incrementally. See the module docstring.

    Args:
        store: where chunks go (its sidecar file also holds the record and the writer lock).
        splitter: default :class:`DefaultSplitter` on the store's embedding model.
        loaders: extra or replacement loaders by suffix, e.g. ``{".jsonl": JSONLLoader(("title", "text"))}``.
        batch_chunks: chunks gathered (across files, or from one big file) before embedding and
            committing them together.
        progress: show progress bars.
        wait: when another process is ingesting into the same collection, wait for it (True) or
            raise :class:`IngestBusy` (False).
        notify: told "waiting for another ingest of collection X (pid N)" (default: printed to stderr).
    """

    def __init__(self, store: ChromaStore, *, splitter: TextSplitter | None = None,
                 loaders: dict[str, Loader] | None = None, batch_chunks: int = 512, progress: bool = True,
                 wait: bool = True, notify: Any = "stderr") -> None:
        self.store = store
        self.splitter = splitter
        self.loaders = loaders
        self.batch_chunks = batch_chunks
        self.progress = progress
        self._record: IndexRecord | None = None
        kwargs = {} if notify == "stderr" else {"notify": notify}
        self._lock = CollectionLock(store.sidecar, store.collection_name, wait=wait, **kwargs)

    @property
    def record(self) -> IndexRecord:
        if self._record is None:
            self._record = IndexRecord(self.store.sidecar)
        return self._record

    def lock(self) -> AbstractContextManager[CollectionLock]:
        """The collection's writer lock (re-entrant within this indexer)."""
        return self._lock

    def _splitter(self) -> TextSplitter:
        if self.splitter is None:
            self.splitter = DefaultSplitter(self.store.embeddings)
        return self.splitter

    def ingest(self, paths: str | Path | Sequence[str | Path] = (), *, glob: str | Sequence[str] = "**/*",
               exclude: Sequence[str] = (), delete_missing: bool = False, prune_missing: bool = False,
               follow_links: bool = False) -> IngestReport:
        """Bring the store in line with the files under ``paths``. Returns what was done.

        Args:
            paths: files and/or folders (may be empty with ``prune_missing``).
            glob, exclude: which files under folders to take, and to leave out.
            delete_missing: remove the chunks of files under ``paths`` that no longer exist.
            prune_missing: remove the chunks of every source of the collection that no longer exists.
            follow_links: follow symbolic links that point outside ``paths`` (indexed under the link's path).
        """
        t0 = time.perf_counter()
        report = IngestReport()
        with self._lock:
            found = discover(paths, glob=glob, exclude=exclude, follow_links=follow_links)
            known = set(self.record.sources())
            for path, reason in found.problems:
                if delete_missing and reason == "no such file":
                    continue  # a folder renamed or removed: --delete-missing takes its files out below
                report.skipped.append(Skipped(path, reason))
                if path in known and not reason.startswith("cannot"):  # its content is gone or refused
                    self._drop_stale(path, report)
            queue: deque[Path] = deque(found.files)
            tries: dict[str, int] = {}
            with _progress(self.progress, total=len(found.files), desc="files", unit="file") as bar:
                live: list[_File] = []  # files with chunks in the current batch
                while queue or live:
                    if not queue:
                        self._flush(live, report, queue, tries)
                        continue
                    item = self._start(queue.popleft(), report)
                    if item is None:
                        bar.update(1)
                        continue
                    self._read(item, live, report, queue, tries)
                    if item.complete:
                        bar.update(1)
            if delete_missing:
                self._remove_gone(self._under(paths), report)
            if prune_missing:
                self._remove_gone(self.record.sources(), report)
        report.seconds = time.perf_counter() - t0
        return report

    # --- one file --------------------------------------------------------------------------------
    def _start(self, path: Path, report: IngestReport) -> _File | None:
        """The file's state before reading it, or None when it is unchanged or cannot be read."""
        source = str(path)
        try:
            digest = file_hash(path)
        except LoadError as e:
            self._skip(source, e, report)
            return None
        old_digest, old_ids, pending = self.record.get(source)
        if old_digest == digest and pending is None:
            report.files_unchanged += 1
            return None
        # Chunks the store certainly holds: the last finished run's (if nothing is pending since),
        # and the committed batches of a run under way.
        reusable = set(old_ids) if pending is None else set()
        item = _File(path, source, digest, existed=old_digest is not None, reusable=reusable)
        progress = self.record.progress(source)
        if progress is not None:
            item.reusable |= set(progress["ids"])
            splitter = repr(self._splitter())
            if progress["hash"] == digest and progress.get("splitter") == splitter and "0x" not in splitter:
                item.ids = dict.fromkeys(progress["ids"])
                item.resume = tuple(progress["resume"]) if progress.get("resume") else None  # type: ignore[assignment]
        return item

    def _read(self, item: _File, live: list[_File], report: IngestReport, queue: deque[Path],
              tries: dict[str, int]) -> None:
        """Split the file as it is read, flushing full batches as they fill."""
        resume, item.resume = item.resume, None
        if item.ids:  # carried over from a run that was killed part way through this very file
            report.files_resumed += 1
        problems: list[Problem] = []
        live.append(item)
        try:
            chunks = self._splitter().stream_chunks(self._documents(item.path, problems), resume=resume)
            for chunk, token in chunks:
                chunk.id = chunk_id(item.source, chunk)
                if chunk.id in item.ids:  # committed by the killed run; given again by the resumed window
                    report.chunks_reused += 1
                    continue
                item.ids[chunk.id] = None
                item.batch.append(chunk)
                item.resume = token
                if sum(len(f.batch) for f in live) >= self.batch_chunks:
                    self._flush(live, report, queue, tries)
        except LoadError as e:
            live.remove(item)
            self._skip(item.source, e, report)
            return
        report.parts_skipped += [Skipped(p.path, p.reason) for p in problems]
        item.complete = True
        if not item.ids:
            live.remove(item)
            self._skip(item.source, LoadError(item.source, "no text left after splitting"), report)

    def _documents(self, path: Path, problems: list[Problem]) -> Iterator[Document | TextStream]:
        for doc in stream_file(path, self.loaders):
            if isinstance(doc, Problem):
                problems.append(doc)
            else:
                yield doc

    def _skip(self, source: str, error: LoadError, report: IngestReport) -> None:
        """Report a file left out; if it was read and found unusable, its old chunks go too."""
        report.skipped.append(Skipped(source, error.reason))
        if not error.unreadable:
            self._drop_stale(source, report)

    def _drop_stale(self, source: str, report: IngestReport) -> None:
        _, old, pending = self.record.get(source)
        progress = self.record.progress(source)
        if old or pending or progress:
            n = self.remove([source])
            report.chunks_deleted += n
            report.skipped[-1].reason += f"; its {n} old chunks were removed from the index"

    # --- one batch -------------------------------------------------------------------------------
    def _flush(self, live: list[_File], report: IngestReport, queue: deque[Path], tries: dict[str, int]) -> None:
        """Commit the chunks gathered so far (the steps of the module docstring)."""
        # (1) note every id that may exist for these files, before touching the store
        self.record.mark_pending({f.source: [c.id or "" for c in f.batch] for f in live})
        # (2) write the chunks that are new
        to_write = [c for f in live for c in f.batch if c.id not in f.reusable]
        self._write(to_write)
        report.chunks_written += len(to_write)
        report.chunks_reused += sum(len(f.batch) for f in live) - len(to_write)
        # (3) what is stored now; files read to the end are checked again and finished
        progress: dict[str, dict[str, Any]] = {}
        done: list[_File] = []
        splitter = repr(self._splitter())
        for f in live:
            f.batch = []
            resume = list(f.resume) if f.resume is not None and not f.complete else None
            progress[f.source] = {"hash": f.digest, "ids": list(f.ids), "resume": resume, "splitter": splitter}
            if not f.complete:
                continue
            try:
                same = file_hash(f.path) == f.digest
            except LoadError:
                same = False
            if same:
                done.append(f)
                continue
            tries[f.source] = tries.get(f.source, 0) + 1
            if tries[f.source] <= RETRIES:
                queue.append(f.path)  # edited while it was indexed: read it again
            else:
                report.skipped.append(Skipped(f.source, "it kept changing while it was indexed; its chunks "
                                                        "may mix versions until you ingest it again"))
        self.record.save_progress(progress)
        stale: list[str] = []
        for f in done:
            _, _, pending = self.record.get(f.source)
            stale += [i for i in (pending or []) if i not in f.ids]
        if stale:
            self.store.delete(stale)
        self.record.mark_done({f.source: (f.digest, list(f.ids)) for f in done})
        report.chunks_deleted += len(set(stale))
        report.files_updated += sum(1 for f in done if f.existed)
        report.files_added += sum(1 for f in done if not f.existed)
        live[:] = [f for f in live if not f.complete]

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

    # --- removing --------------------------------------------------------------------------------
    def remove(self, sources: Sequence[str | Path]) -> int:
        """Delete the chunks of these source files from the store and the record; returns chunks deleted."""
        known = set(self.record.sources())
        names = [str(s) if str(s) in known else source_name(s) for s in sources]
        with self._lock:
            # pending first (and progress dropped), so a crash part way leaves them to be redone
            self.record.mark_pending(dict.fromkeys(names, []), drop_progress=True)
            ids: list[str] = []
            for name in names:
                _, old, pending = self.record.get(name)
                ids += sorted(set(old) | set(pending or []))
            if ids:
                self.store.delete(ids)
            self.record.forget(names)
        return len(ids)

    def _under(self, paths: str | Path | Sequence[str | Path]) -> list[str]:
        items = [paths] if isinstance(paths, (str, Path)) else list(paths)
        roots = [Path(source_name(p)) for p in items]
        roots += [Path(p).expanduser().resolve() for p in items]
        return [s for s in self.record.sources()
                if any(Path(s) == r or r in Path(s).parents for r in roots)]

    def _remove_gone(self, sources: Sequence[str], report: IngestReport) -> None:
        missing = [s for s in sources if gone(s)]
        if missing:
            report.chunks_deleted += self.remove(missing)
            report.files_deleted += len(missing)


def ingest(paths: str | Path | Sequence[str | Path] = (), *, collection: str = "default",
           store: ChromaStore | None = None, splitter: TextSplitter | None = None,
           loaders: dict[str, Loader] | None = None, glob: str | Sequence[str] = "**/*",
           exclude: Sequence[str] = (), delete_missing: bool = False, prune_missing: bool = False,
           follow_links: bool = False, wait: bool = True, progress: bool = True) -> IngestReport:
    """Ingest files and folders into a collection (default: :func:`plait.defaults.default_store`).

    Args:
        paths: files and/or folders.
        collection: the collection of the default store, when ``store`` is not given.
        store: a :class:`ChromaStore` to use instead of the default embedded one.
        splitter, loaders, wait: see :class:`Indexer`.
        glob, exclude, delete_missing, prune_missing, follow_links: see :meth:`Indexer.ingest`.
        progress: show progress bars.
    """
    if store is None:
        from plait.defaults import default_store

        store = default_store(collection)
    return Indexer(store, splitter=splitter, loaders=loaders, progress=progress, wait=wait).ingest(
        paths, glob=glob, exclude=exclude, delete_missing=delete_missing, prune_missing=prune_missing,
        follow_links=follow_links)
