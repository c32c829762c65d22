"""The ingestion record: per source file, what the store holds for it, in SQLite beside the collection.

One row per source (``ingest_files``):

- ``hash``: SHA-256 of the file's bytes when it was last fully indexed (NULL if never);
- ``chunk_ids``: the ids of its chunks then (JSON list);
- ``pending``: NULL when the store holds exactly ``chunk_ids`` for it; else every id that may be
  in the store for it (a run was interrupted, or is under way): the next run redoes the file and
  deletes what is pending and not wanted;
- ``progress``: for a file part way through (a big file is committed in batches), JSON
  ``{"hash", "ids", "resume", "splitter"}``: ids certainly in the store (committed batches of
  that version of the file) and where splitting can resume. Only ever holds ids that are stored.

See :mod:`plait.retrievers.indexing` for the steps that keep these true through a SIGKILL.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(ingest_files)")}
        if "progress" not in columns:  # records written before resumable ingestion
            self.db.execute("ALTER TABLE ingest_files ADD COLUMN progress TEXT")
        self.db.commit()
        self._lock = threading.Lock()

    def get(self, source: str) -> tuple[str | None, list[str], list[str] | None]:
        """(hash, chunk ids, pending ids or None) for a source; (None, [], None) if unknown."""
        row = self.db.execute("SELECT hash, chunk_ids, pending FROM ingest_files WHERE source = ?",
                              (source,)).fetchone()
        if row is None:
            return None, [], None
        return row[0], json.loads(row[1]), json.loads(row[2]) if row[2] is not None else None

    def progress(self, source: str) -> dict[str, Any] | None:
        """The committed part of a file under way (see the module docstring), or None."""
        row = self.db.execute("SELECT progress FROM ingest_files WHERE source = ?", (source,)).fetchone()
        return json.loads(row[0]) if row is not None and row[0] is not None else None

    def sources(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT source FROM ingest_files ORDER BY source")]

    def mark_pending(self, entries: dict[str, list[str]], *, drop_progress: bool = False) -> None:
        """Note, per source, every chunk id that may be in the store once the batch is (partly) written.

        ``drop_progress``: the source's chunks are about to be deleted, so its progress (ids that
        are stored) must go first.
        """
        with self._lock, self.db:
            for source, ids in entries.items():
                _, old, pending = self.get(source)
                progress = self.progress(source)
                done = progress["ids"] if progress else []
                everything = sorted(set(old) | set(pending or []) | set(done) | set(ids))
                self.db.execute("INSERT INTO ingest_files (source, hash, chunk_ids, pending) VALUES (?, NULL, ?, ?) "
                                "ON CONFLICT(source) DO UPDATE SET pending = excluded.pending",
                                (source, json.dumps(old), json.dumps(everything)))
                if drop_progress:
                    self.db.execute("UPDATE ingest_files SET progress = NULL WHERE source = ?", (source,))

    def save_progress(self, entries: dict[str, dict[str, Any]]) -> None:
        """Record the committed part of files under way (their rows exist: mark_pending came first)."""
        with self._lock, self.db:
            self.db.executemany("UPDATE ingest_files SET progress = ? WHERE source = ?",
                                [(json.dumps(p), s) for s, p in entries.items()])

    def mark_done(self, entries: dict[str, tuple[str, list[str]]]) -> None:
        with self._lock, self.db:
            self.db.executemany("INSERT OR REPLACE INTO ingest_files (source, hash, chunk_ids, pending, progress) "
                                "VALUES (?, ?, ?, NULL, NULL)",
                                [(source, digest, json.dumps(ids)) for source, (digest, ids) in entries.items()])

    def forget(self, sources: Sequence[str]) -> None:
        with self._lock, self.db:
            self.db.executemany("DELETE FROM ingest_files WHERE source = ?", [(s,) for s in sources])

    def close(self) -> None:
        self.db.close()
