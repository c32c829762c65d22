"""Keeping a :class:`~plait.retrievers.chroma.ChromaStore` in step with other processes' writes.

Two cases, one class each (docs/scaling.md, "Several processes"):

- :class:`EmbeddedWatch`, embedded Chroma (one data directory, processes on one machine). Chroma
  keeps a collection's HNSW graph in memory per process and never reloads it, so a vector query
  misses vectors another process wrote (chroma-core/chroma#3769, #3792). Chroma's SQLite log does
  record every write: each record gets the next ``seq_id`` in ``embeddings_queue``. The watch reads
  that high-water mark (one indexed SQLite read, ~20 µs) before every vector query; when it moved
  and this process did not move it, the store reopens its client, which loads the graph again
  from disk and Chroma's log. Writes from plait processes take an OS lock on the directory, reopen
  first if another process wrote, and note the mark they leave, so their own writes never cause a
  reopen and two writers never flush graphs that lack each other's records.
- :class:`ChangeFeed`, a Chroma server. Every client shares the vectors, but each keeps its own
  lexical index. Every plait write appends change records to a second collection on the server,
  ``<collection>.plait-changes``, *after* the data: a time stamp (``time_ns``), the op and the ids
  touched (at most :data:`IDS_PER_RECORD` per record), and the writer's lexical index (``by``).
  Before a lexical read, a client reads the records newer than its last seen stamp minus
  ``window`` seconds (so a record that landed late, or a writer's clock a little behind, is still
  read), skips those it applied or wrote itself, and fetches the current state of the ids they
  name from Chroma: an id Chroma no longer has is deleted from the local index, one it has is
  upserted. Applying a record is idempotent and reads the state of now, so the order in which
  concurrent writers' records arrive does not matter. A client whose local index is new (or
  was last in step more than ``retention`` ago) refills it from Chroma once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.retrievers.lexical_engine import FileLock

if TYPE_CHECKING:
    from plait.retrievers.base import KeywordIndex
    from plait.retrievers.chroma import ChromaStore

IDS_PER_RECORD = 500
_STATE = "plait-follow.json"  # in the local lexical index's folder: who it is, how far it followed


class EmbeddedWatch:
    """Tells an embedded store whether another process wrote to its Chroma directory.

    Args:
        path: the directory given to ``chromadb.PersistentClient``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: int | None = None  # the high-water mark the open client reflects
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def mark(self) -> int:
        """Chroma's write high-water mark: the last log sequence number (or the segments' last applied one)."""
        with self._lock:
            if self._con is None:
                db = self.path / "chroma.sqlite3"
                if not db.exists():
                    return 0
                self._con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
            row = self._con.execute("SELECT max(coalesce((SELECT max(seq_id) FROM embeddings_queue), 0), "
                                    "coalesce((SELECT max(seq_id) FROM max_seq_id), 0))").fetchone()
            return int(row[0])

    def stale(self) -> bool:
        """True when Chroma's mark moved since the open client noted it (another process wrote)."""
        return self.seen is not None and self.mark() != self.seen

    @contextmanager
    def writing(self, reopen_if_stale: Callable[[], None]) -> Iterator[None]:
        """Hold the directory's write lock across processes; reopen first if another process wrote."""
        lock = self.path / "plait" / ".chroma-write.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(lock):
            reopen_if_stale()
            yield
            self.seen = self.mark()

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


class Gate:
    """The reads in flight on one embedded client, so that a reopen closes it only when they are done.

    A reader notes the client's ``generation`` when it takes the collection, then runs its read
    inside ``using(generation)``, which answers False when the client was replaced meanwhile (read
    again with the new one). :meth:`close` waits for the reads in flight, then closes.
    """

    def __init__(self) -> None:
        self.generation = 0
        self._inflight = 0
        self._closing = False
        self._cond = threading.Condition()

    @contextmanager
    def using(self, generation: int) -> Iterator[bool]:
        with self._cond:
            while self._closing:
                self._cond.wait()
            current = generation == self.generation
            self._inflight += current
        try:
            yield current
        finally:
            if current:
                with self._cond:
                    self._inflight -= 1
                    self._cond.notify_all()

    def close(self, client: Any) -> None:
        with self._cond:
            self._closing = True
            while self._inflight:
                self._cond.wait()
        try:
            reopen(client)
        finally:
            with self._cond:
                self.generation += 1
                self._closing = False
                self._cond.notify_all()


def reopen(client: Any) -> None:
    """Close a ``PersistentClient`` so that the next one loads the collection from disk again.

    chromadb caches one System (with the in-memory HNSW graphs) per directory and per process,
    shared by every client of that directory (``SharedSystemClient``): closing the last client
    stops it; when another object in this process still holds one, the cached System is dropped
    from the cache so that the next client gets a new one (the other object keeps its own).
    """
    from chromadb.api.shared_system_client import SharedSystemClient

    ident = getattr(client, "_identifier", None)
    client.close()
    if ident is not None:
        SharedSystemClient._identifier_to_system.pop(ident, None)


def refill_lexical(store: ChromaStore, lexical: KeywordIndex) -> None:
    """Refill a lexical index from the store's Chroma collection (clear, then every chunk in batches)."""
    if store.mode == "http" and lexical is store.bm25:
        store.feed().refilling()  # the change records from here on are still to follow
    lexical.clear()
    offset = 0
    while True:
        got = store.collection.get(include=["documents", "metadatas"], limit=1000, offset=offset)
        if not got["ids"]:
            break
        lexical.upsert(got["ids"], [d or "" for d in got["documents"]], [m or {} for m in got["metadatas"]])
        offset += len(got["ids"])


def refresh_lexical(store: ChromaStore, ids: Sequence[str]) -> None:
    """Give the store's lexical index Chroma's current state of these ids (gone ones are deleted)."""
    assert store.bm25 is not None
    step = store._max_batch()
    for start in range(0, len(ids), step):
        part = list(ids[start:start + step])
        got = store.collection.get(ids=part, include=["documents", "metadatas"])
        if got["ids"]:
            store.bm25.upsert(got["ids"], [d or "" for d in got["documents"]], [m or {} for m in got["metadatas"]])
        gone = set(part) - set(got["ids"])
        if gone:
            store.bm25.delete(sorted(gone))


class ChangeFeed:
    """The change log of one collection on a Chroma server, and how far a local lexical index followed it.

    Args:
        client: a chromadb ``HttpClient``.
        collection: the data collection's name (the log is ``<collection>.plait-changes``).
        folder: the local lexical index's folder (its identity and progress are kept there).
        window: seconds of records read again before the last seen stamp.
        retention: seconds a record is kept; a client further behind refills its index from Chroma.
    """

    def __init__(self, client: Any, collection: str, folder: Path | None, *, window: float = 10.0,
                 retention: float = 7 * 86400.0) -> None:
        self.client = client
        self.name = f"{collection}.plait-changes"
        self.folder = folder
        self.window_ns = int(window * 1e9)
        self.retention_ns = int(retention * 1e9)
        self._log: Any = None
        self._state: dict[str, Any] | None = None
        self._applied: dict[str, int] = {}  # record id -> its stamp, for records inside the window
        self._written = 0
        self._lock = threading.RLock()

    # --- the log on the server ---------------------------------------------------------------------
    @property
    def log(self) -> Any:
        if self._log is None:
            self._log = self.client.get_or_create_collection(self.name, embedding_function=None)
        return self._log

    def record(self, op: str, ids: Sequence[str]) -> None:
        """Append the change records of one write (call it after the data is written)."""
        by = self.state()["by"]
        parts = [list(ids[i:i + IDS_PER_RECORD]) for i in range(0, len(ids), IDS_PER_RECORD)] or [[]]
        stamp = time.time_ns()
        rids = [f"{stamp:020d}-{by}-{uuid.uuid4().hex[:8]}" for _ in parts]
        metas = [{"at": stamp, "op": op, "ids": json.dumps(p), "by": by} for p in parts]
        self.log.add(ids=rids, embeddings=[[1.0]] * len(parts), metadatas=metas)  # type: ignore[arg-type]
        with self._lock:
            self._applied.update((r, stamp) for r in rids)
            self._written += 1
            prune = self._written % 100 == 1
        if prune:  # now and then, whoever writes drops the records past the retention
            self.log.delete(where={"at": {"$lt": stamp - self.retention_ns}})

    # --- following it ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """This local index's identity (``by``) and the last stamp it followed (``at``, 0: never)."""
        with self._lock:
            if self._state is None:
                state: dict[str, Any] = {}
                if self.folder is not None and (self.folder / _STATE).exists():
                    state = json.loads((self.folder / _STATE).read_text())
                self._state = {"by": state.get("by") or uuid.uuid4().hex[:12], "at": int(state.get("at", 0))}
                self._save()
            return self._state

    def _save(self) -> None:
        if self.folder is None or self._state is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{_STATE}.{os.getpid()}"
        tmp.write_text(json.dumps(self._state))
        os.replace(tmp, self.folder / _STATE)

    def refilling(self) -> None:
        """Note that the local index is being refilled from Chroma now: what it reads covers every
        record older than the window before now."""
        with self._lock:
            state = self.state()
            state["at"] = time.time_ns() - self.window_ns
            self._save()

    def follow(self, refill: Callable[[], None], apply: Callable[[list[str]], None]) -> int:
        """Bring the local index in line with the log: ``refill()`` when it never followed (or fell
        past the retention), else ``apply(ids)`` with the ids of the records not applied yet
        (``refill()`` instead when one of them is a clear).

        Returns: the records read (-1 after a refill).
        """
        with self._lock:
            state = self.state()
            if state["at"] == 0 or time.time_ns() - state["at"] > self.retention_ns:
                refill()  # it calls refilling()
                return -1
            since = state["at"] - self.window_ns
            rids = self.log.get(where={"at": {"$gt": since}}, include=[])["ids"]
            new = [r for r in rids if r not in self._applied]
            if new:
                got = self.log.get(ids=new, include=["metadatas"])
                records = list(zip(got["ids"], got["metadatas"], strict=True))
                theirs = [m for _, m in records if m["by"] != state["by"]]  # ours are in the local index
                if any(m["op"] == "clear" for m in theirs):
                    refill()
                else:
                    ids = list(dict.fromkeys(i for m in theirs for i in json.loads(m["ids"])))
                    if ids:
                        apply(ids)
                for rid, meta in records:
                    self._applied[rid] = int(meta["at"])
                    state["at"] = max(state["at"], int(meta["at"]))
                self._save()
            horizon = state["at"] - 2 * self.window_ns
            self._applied = {r: at for r, at in self._applied.items() if at > horizon}
            return len(new)
