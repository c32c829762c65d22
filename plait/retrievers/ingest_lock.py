"""One writer per collection: an OS file lock (``fcntl.flock``) beside the collection's record.

Two ingests of the same collection at once would interleave their writes and records (issue 18,
item 10: chunks in the store that no record mentions, a record naming chunks that do not exist).
So every ingest (and every removal through :class:`~plait.retrievers.indexing.Indexer`) holds
``<collection>.ingest.lock`` beside the collection's sidecar for its whole run. The lock is the
kernel's: it goes when the process exits, killed or not, so a crash never leaves a stale lock.
The file holds the holder's pid, for the message a second writer prints while it waits.

The lock is per data directory: with a Chroma server, writers on other machines do not see it
(one ingesting machine per collection, or a lock of your own, there).

Example::

    with CollectionLock("/data/plait/docs.sqlite", "docs", wait=False):
        ...  # raises IngestBusy at once if another process is ingesting into "docs"
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType


class IngestBusy(RuntimeError):
    """Another process holds the collection's writer lock (and we were told not to wait)."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class CollectionLock:
    """The writer lock of one collection, re-entrant within this object.

    Args:
        sidecar: the collection's record file; the lock is ``<sidecar stem>.ingest.lock`` beside it.
            None (an in-memory store) locks nothing: no other process can see that store.
        collection: its name, for messages.
        wait: wait for the other writer (True), or raise :class:`IngestBusy` at once (False).
        notify: called once with "waiting for another ingest of collection X (pid N)" before waiting.
        poll: seconds between attempts while waiting.
    """

    def __init__(self, sidecar: str | Path | None, collection: str, *, wait: bool = True,
                 notify: Callable[[str], None] | None = _say, poll: float = 0.2) -> None:
        self.path = Path(sidecar).with_suffix(".ingest.lock") if sidecar is not None else None
        self.collection = collection
        self.wait = wait
        self.notify = notify
        self.poll = poll
        self._fd: int | None = None
        self._depth = 0

    def holder(self) -> int | None:
        """The pid written by the process that holds (or last held) the lock, if readable."""
        if self.path is None:
            return None
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    def acquire(self) -> None:
        import fcntl

        self._depth += 1
        if self._depth > 1 or self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        told = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pid = self.holder()
                    who = f" (pid {pid})" if pid else ""
                    if not self.wait:
                        raise IngestBusy(f"another ingest of collection {self.collection!r} is running{who}; "
                                         "wait for it to finish, or run again without --no-wait to wait "
                                         "for it") from None
                    if not told and self.notify is not None:
                        self.notify(f"waiting for another ingest of collection {self.collection!r}{who}")
                        told = True
                    time.sleep(self.poll)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            self._depth -= 1
            raise
        self._fd = fd

    def release(self) -> None:
        self._depth -= 1
        if self._depth > 0 or self._fd is None:
            return
        os.close(self._fd)  # closing the descriptor releases the flock; the file stays (others may hold it open)
        self._fd = None

    def __enter__(self) -> CollectionLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
