"""A log of prompts and answers in SQLite (``<data dir>/logs.sqlite3``), like simonw/llm's ``llm logs``.

``plait ask`` and ``plait chat`` add one row per answer unless ``--no-log`` is given or the config
says ``log false``; ``plait logs`` prints the most recent ones.

Example::

    from plait.logs import LogDB
    db = LogDB(":memory:")
    db.add(command="ask", model="local", prompt="Why?", answer="Because.")
    db.recent(1)[0].answer           # "Because."
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOG_FILE = "logs.sqlite3"

_SCHEMA = """CREATE TABLE IF NOT EXISTS responses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    datetime_utc TEXT NOT NULL,
    command TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    answer TEXT NOT NULL,
    collection TEXT,
    session TEXT,
    sources TEXT NOT NULL DEFAULT '[]',
    usage TEXT,
    duration_ms INTEGER
)"""


@dataclass
class LogEntry:
    """One logged answer."""

    id: int
    datetime_utc: str
    command: str
    model: str
    prompt: str
    answer: str
    collection: str | None = None
    session: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    duration_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def log_path() -> Path:
    from plait.defaults import data_dir

    return data_dir() / LOG_FILE


class LogDB:
    """The log database (default ``<data dir>/logs.sqlite3``; ``":memory:"`` for tests)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else str(log_path())
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute(_SCHEMA)
        self.db.commit()

    def add(self, *, command: str, model: str, prompt: str, answer: str, collection: str | None = None,
            session: str | None = None, sources: list[dict[str, Any]] | None = None,
            usage: dict[str, Any] | None = None, duration_ms: int | None = None) -> int:
        """Log one answer; returns its id."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self.db:
            cur = self.db.execute(
                "INSERT INTO responses (datetime_utc, command, model, prompt, answer, collection, session, sources, "
                "usage, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now, command, model, prompt, answer, collection, session, json.dumps(sources or []),
                 json.dumps(usage) if usage is not None else None, duration_ms))
        return int(cur.lastrowid or 0)

    def recent(self, n: int | None = 3) -> list[LogEntry]:
        """The last ``n`` entries (all when ``n`` is None or 0), oldest first."""
        query = "SELECT * FROM responses ORDER BY id DESC"
        rows = self.db.execute(query + " LIMIT ?", (n,)).fetchall() if n else self.db.execute(query).fetchall()
        entries = []
        for row in reversed(rows):
            (id_, when, command, model, prompt, answer, collection, session, sources, usage, duration) = row
            entries.append(LogEntry(id_, when, command, model, prompt, answer, collection, session,
                                    json.loads(sources or "[]"), json.loads(usage) if usage else None, duration))
        return entries

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self.db.close()
