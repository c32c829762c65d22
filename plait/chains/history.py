"""Chat history that survives restarts: messages in SQLite keyed by session id, trimmed to fit.

- :class:`SQLiteChatHistory` stores messages per session in one SQLite file (by default
  ``<data dir>/history.sqlite3``). Every write commits, so a new process sees the same history.
- :func:`trim_messages` fits a conversation into a token budget: the system message(s) always
  stay, then the latest turns are kept, newest first, while they fit; a turn is never cut in half
  (an assistant reply is not kept without the user message that asked for it).
- :class:`WithHistory` wraps a chat model (or any Runnable over messages) so each call loads the
  session's history, trims it, runs, and appends the new turn.

Example::

    from plait.chains.history import SQLiteChatHistory, WithHistory
    from plait.fake import FakeChatModel
    bot = WithHistory(FakeChatModel(["Hi Ada!"]), SQLiteChatHistory("/tmp/h.sqlite3"), max_tokens=512)
    bot.invoke({"session_id": "ada", "input": "Hi, I am Ada."}).content   # "Hi Ada!"
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from plait.messages import (
    AssistantChunk,
    AssistantMessage,
    Message,
    SystemMessage,
    UserMessage,
    add_chunks,
    message_from,
)
from plait.runnable import Runnable

TokenCounter = Callable[[Sequence[Message]], int]


def approx_token_count(messages: Sequence[Message]) -> int:
    """A model-free estimate: about 4 characters a token, plus 4 tokens of framing per message."""
    return sum(len(m.content) // 4 + 4 for m in messages)


def token_counter_for(model: Any) -> TokenCounter:
    """The model's own token count (``model.count_tokens(messages)``) when it has one, else
    :func:`approx_token_count`."""
    count = getattr(model, "count_tokens", None)
    if callable(count):
        def counter(messages: Sequence[Message]) -> int:
            return int(count(list(messages)))
        return counter
    return approx_token_count


def context_window_of(model: Any, default: int = 2048) -> int:
    """The model's context length (``context_window`` / ``max_context`` / ``context_length``), else ``default``."""
    for attr in ("context_window", "max_context", "context_length"):
        value = getattr(model, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


def trim_messages(messages: Sequence[Message], max_tokens: int,
                  count_tokens: TokenCounter = approx_token_count) -> list[Message]:
    """Keep the system messages and the latest whole turns that fit in ``max_tokens``.

    A turn starts at a user message and runs to the next one (assistant replies and tool results
    included). Raises ValueError if the system messages, or the latest turn, alone do not fit.
    """
    system = [m for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    budget = max_tokens - (count_tokens(system) if system else 0)
    if budget < 0:
        raise ValueError(f"The system message alone needs more than the {max_tokens}-token budget; "
                         "shorten it or raise max_tokens")
    turns: list[list[Message]] = []
    for m in rest:
        if m.role == "user" or not turns:
            turns.append([m])
        else:
            turns[-1].append(m)
    kept: list[Message] = []
    for turn in reversed(turns):
        candidate = turn + kept
        if count_tokens(candidate) > budget:
            break
        kept = candidate
    if turns and not kept:
        raise ValueError(f"The latest turn alone needs {count_tokens(turns[-1])} tokens, more than the "
                         f"{budget} left after the system message; shorten it or raise max_tokens")
    return system + kept


class SQLiteChatHistory:
    """Messages per session id in one SQLite file. Safe to share between threads.

    Args:
        path: the database file; default ``<data dir>/history.sqlite3``.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            from plait.defaults import data_dir

            path = data_dir() / "history.sqlite3"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                       "session_id TEXT NOT NULL, created REAL NOT NULL, message TEXT NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS messages_session ON messages(session_id, id)")

    def __repr__(self) -> str:
        return f"SQLiteChatHistory({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def messages(self, session_id: str) -> list[Message]:
        """The session's messages, oldest first (empty for an unknown session)."""
        with self._lock, self._connect() as db:
            rows = db.execute("SELECT message FROM messages WHERE session_id = ? ORDER BY id",
                              (session_id,)).fetchall()
        return [message_from(_loads(r[0])) for r in rows]

    def add(self, session_id: str, messages: Sequence[Message | tuple[str, str] | dict[str, Any]]) -> None:
        """Append messages to the session (committed before returning)."""
        rows = [(session_id, time.time(), message_from(m).model_dump_json()) for m in messages]
        with self._lock, self._connect() as db:
            db.executemany("INSERT INTO messages (session_id, created, message) VALUES (?, ?, ?)", rows)

    def clear(self, session_id: str) -> None:
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM messages WHERE session_id = ?", (session_id,))

    def sessions(self) -> list[str]:
        """Session ids, most recently used first."""
        with self._lock, self._connect() as db:
            rows = db.execute("SELECT session_id, MAX(id) AS last FROM messages GROUP BY session_id "
                              "ORDER BY last DESC").fetchall()
        return [r[0] for r in rows]


def _loads(text: str) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(text)
    return data


class WithHistory(Runnable[dict[str, Any], Any]):
    """Runs a chat model over the session's (trimmed) history plus the new input, then saves the turn.

    Input: ``{"session_id": ..., "input": "text or message"}``. Output: whatever the wrapped step
    returns (an AssistantMessage for a chat model). Streams when the wrapped step streams; the turn
    is saved once the stream is complete.

    Args:
        runnable: a chat model or a Runnable from a list of messages to a message or text.
        history: where messages are kept.
        system: a system message put first on every call (not stored).
        max_tokens: the token budget for system + history + input; default: the model's context
            window minus ``reserve`` tokens for the reply.
        count_tokens: how to count tokens; default: the model's counter, else an estimate.
    """

    def __init__(self, runnable: Runnable[Any, Any], history: SQLiteChatHistory, *, system: str | None = None,
                 max_tokens: int | None = None, reserve: int = 256,
                 count_tokens: TokenCounter | None = None) -> None:
        self.runnable = runnable
        self.history = history
        self.system = system
        self._max_tokens = max_tokens
        self.reserve = reserve
        self.count_tokens = count_tokens or token_counter_for(runnable)

    @property
    def max_tokens(self) -> int:
        """The token budget; by default read from the model on first use (so building this loads nothing)."""
        if self._max_tokens is None:
            self._max_tokens = context_window_of(self.runnable) - self.reserve
        return self._max_tokens

    def get_name(self) -> str:
        return self.name or f"WithHistory({self.runnable.get_name()})"

    def _prepare(self, input: dict[str, Any]) -> tuple[str, Message, list[Message]]:
        if not isinstance(input, dict) or "session_id" not in input or "input" not in input:
            raise TypeError("WithHistory takes {'session_id': ..., 'input': ...}")
        session = str(input["session_id"])
        new = input["input"]
        new_msg = UserMessage(content=new) if isinstance(new, str) else message_from(new)
        head = [SystemMessage(content=self.system)] if self.system else []
        messages = trim_messages([*head, *self.history.messages(session), new_msg], self.max_tokens,
                                 self.count_tokens)
        return session, new_msg, messages

    def _save(self, session: str, new_msg: Message, output: Any) -> None:
        if isinstance(output, AssistantChunk):
            output = output.to_message()
        reply = output if isinstance(output, AssistantMessage) else AssistantMessage(content=str(output))
        self.history.add(session, [new_msg, reply])

    def invoke(self, input: dict[str, Any], **kwargs: Any) -> Any:
        session, new_msg, messages = self._prepare(input)
        output = self.runnable.invoke(messages, **kwargs)
        self._save(session, new_msg, output)
        return output

    def stream(self, input: dict[str, Any], **kwargs: Any) -> Iterator[Any]:
        session, new_msg, messages = self._prepare(input)
        total: Any = None
        for chunk in self.runnable.stream(messages, **kwargs):
            total = add_chunks(total, chunk)
            yield chunk
        self._save(session, new_msg, total)
