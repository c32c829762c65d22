"""Caching for any model or chain: an exact cache and a semantic cache, both in SQLite.

Wrap a step with :class:`Cached` (or :func:`cached`). Every entry is keyed by a *namespace* that
describes the step itself (for a chat model: its class, model id, path or base URL and default
options; for a chain: every step's description, prompt texts and functions' code) together with
the call options, so two models, or one model with other settings, never share an entry.

- :class:`ExactCache`: a hit needs the same namespace, the same options and the same input
  (compared as canonical JSON, hashed with SHA-256).
- :class:`SemanticCache`: a hit needs the same namespace and options, the same conversation
  *before* the last user message (system prompt and history compared exactly), and a last user
  message whose embedding has cosine similarity ``>= threshold`` with a stored one. Rephrasings
  ("What is plait?" / "what's plait") hit; different questions under the threshold never do.

Values are stored as JSON (pydantic models with their class name), so a cached
``AssistantMessage`` comes back as an ``AssistantMessage``. Streaming a hit replays the value as
one chunk; streaming a miss passes the chunks through and stores their sum.

Example::

    from plait.chains.cache import Cached, ExactCache
    model = Cached(my_model, ExactCache())        # <data dir>/cache/exact.sqlite3
    model.invoke("hi"); model.invoke("hi")        # the second call does not run the model
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import sqlite3
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from plait.messages import AssistantChunk, AssistantMessage, ToolCallChunk, add_chunks, to_messages
from plait.runnable import Runnable

_MISS = object()
_PRIMITIVES = (str, int, float, bool, type(None))


# --- what identifies a step -------------------------------------------------------------------
def describe(step: Any, _depth: int = 0) -> Any:
    """A JSON-able description of a step that changes whenever its behaviour can change."""
    if _depth > 8:
        return type(step).__qualname__
    if isinstance(step, _PRIMITIVES):
        return step
    if isinstance(step, (list, tuple)):
        return [describe(s, _depth + 1) for s in step]
    if isinstance(step, dict):
        return {str(k): describe(v, _depth + 1) for k, v in sorted(step.items(), key=lambda kv: str(kv[0]))}
    if isinstance(step, BaseModel):
        return {"__model__": type(step).__qualname__, **step.model_dump(mode="json")}
    if inspect.isfunction(step) or inspect.ismethod(step):
        code = step.__code__
        body = hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()[:16]
        return {"__function__": f"{step.__module__}.{step.__qualname__}", "code": body}
    if isinstance(step, type):
        return f"{step.__module__}.{step.__qualname__}"
    slots = [s for cls in type(step).__mro__ for s in getattr(cls, "__slots__", ())]
    if isinstance(step, Runnable) or hasattr(step, "__dict__") or slots:
        attrs = dict(vars(step)) if hasattr(step, "__dict__") else {}
        attrs.update({s: getattr(step, s) for s in slots if hasattr(step, s) and s != "__weakref__"})
        out: dict[str, Any] = {"__class__": f"{type(step).__module__}.{type(step).__qualname__}"}
        for attr in ("model_name", "model_id", "model_path", "path", "base_url"):
            value = getattr(type(step), attr, None) if attr not in attrs else None
            if isinstance(value, str):
                out[attr] = value
        for key, value in sorted(attrs.items()):
            if key.startswith("_") or key in ("calls",):
                continue
            if (isinstance(value, (*_PRIMITIVES, list, tuple, dict, BaseModel, Runnable))
                    or inspect.isfunction(value) or inspect.ismethod(value)):
                out[key] = describe(value, _depth + 1)
            elif hasattr(value, "__dict__") and not isinstance(value, type):
                out[key] = type(value).__qualname__  # a client, a lock, a loaded model: its kind only
        return out
    return type(step).__qualname__


def namespace_of(step: Any) -> str:
    """A short stable hash of :func:`describe`."""
    return hashlib.sha256(json.dumps(describe(step), sort_keys=True, default=str).encode()).hexdigest()[:32]


# --- values in and out of JSON ------------------------------------------------------------------
def encode(value: Any) -> Any:
    """Turn a value into JSON-able data that :func:`decode` turns back into the same value."""
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, BaseModel):
        cls = type(value)
        return {"__pydantic__": f"{cls.__module__}:{cls.__qualname__}", "data": value.model_dump(mode="json")}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {"__dict__": {str(k): encode(v) for k, v in value.items()}}
    raise TypeError(f"Cannot cache a {type(value).__name__}: cache steps returning strings, numbers, "
                    "lists, dicts or pydantic models")


def decode(data: Any) -> Any:
    if isinstance(data, list):
        return [decode(v) for v in data]
    if isinstance(data, dict):
        if "__pydantic__" in data:
            module, _, name = data["__pydantic__"].partition(":")
            cls: Any = importlib.import_module(module)
            for part in name.split("."):
                cls = getattr(cls, part)
            return cls.model_validate(data["data"])
        return {k: decode(v) for k, v in data["__dict__"].items()}
    return data


def _canonical(value: Any) -> str:
    return json.dumps(encode(value), sort_keys=True, default=repr)


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\x00")
    return h.hexdigest()


class _Store:
    def __init__(self, path: str | Path | None, default_name: str) -> None:
        if path is None:
            from plait.defaults import cache_dir

            path = cache_dir() / default_name
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class ExactCache(_Store):
    """Entries keyed by (namespace, options, input). Default file: ``<data dir>/cache/exact.sqlite3``."""

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__(path, "exact.sqlite3")
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS exact (key TEXT PRIMARY KEY, namespace TEXT NOT NULL, "
                       "created REAL NOT NULL, value TEXT NOT NULL)")

    def lookup(self, namespace: str, options: str, input: Any) -> Any:
        key = _digest(namespace, options, _canonical(input))
        with self._lock, self._connect() as db:
            row = db.execute("SELECT value FROM exact WHERE key = ?", (key,)).fetchone()
        return decode(json.loads(row[0])) if row else _MISS

    def store(self, namespace: str, options: str, input: Any, value: Any) -> None:
        key = _digest(namespace, options, _canonical(input))
        with self._lock, self._connect() as db:
            db.execute("INSERT OR REPLACE INTO exact VALUES (?, ?, ?, ?)",
                       (key, namespace, time.time(), json.dumps(encode(value))))

    def clear(self) -> None:
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM exact")


def _split_prompt(input: Any) -> tuple[str, str]:
    """(everything before the last user message, the last user message's text)."""
    if isinstance(input, str):
        return "", input
    if isinstance(input, dict) and isinstance(input.get("question"), str):
        rest = {k: v for k, v in input.items() if k != "question"}
        return _canonical(rest), input["question"]
    try:
        messages = to_messages(input)
    except (TypeError, ValueError):
        return _canonical(input), ""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            before = messages[:i] + messages[i + 1:]
            return _canonical([m.model_dump(mode="json") for m in before]), messages[i].content
    return _canonical([m.model_dump(mode="json") for m in messages]), ""


def _embed(embeddings: Any, text: str) -> list[float]:
    if hasattr(embeddings, "embed_query"):
        vector = embeddings.embed_query(text)
    elif isinstance(embeddings, Runnable):
        vector = embeddings.invoke(text)
    else:
        vector = embeddings(text)
    return [float(x) for x in vector]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


class SemanticCache(_Store):
    """Entries found by embedding similarity of the last user message (see the module docstring).

    Args:
        embeddings: an embedding model (``embed_query(text)``) or a Runnable/function text -> vector.
        threshold: the cosine similarity a hit needs (0.95 is strict; lower hits more rephrasings).
        path: default ``<data dir>/cache/semantic.sqlite3``.
    """

    def __init__(self, embeddings: Any, threshold: float = 0.95, path: str | Path | None = None) -> None:
        super().__init__(path, "semantic.sqlite3")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.embeddings = embeddings
        self.threshold = threshold
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS semantic (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                       "scope TEXT NOT NULL, prompt TEXT NOT NULL, vector BLOB NOT NULL, "
                       "created REAL NOT NULL, value TEXT NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS semantic_scope ON semantic(scope)")

    def _scope(self, namespace: str, options: str, input: Any) -> tuple[str, str]:
        before, prompt = _split_prompt(input)
        embedder = getattr(self.embeddings, "model_name", None) or type(self.embeddings).__qualname__
        return _digest(namespace, options, before, str(embedder)), prompt

    def lookup(self, namespace: str, options: str, input: Any) -> Any:
        scope, prompt = self._scope(namespace, options, input)
        if not prompt:
            return _MISS
        with self._lock, self._connect() as db:
            rows = db.execute("SELECT prompt, vector, value FROM semantic WHERE scope = ?", (scope,)).fetchall()
        if not rows:
            return _MISS
        for stored, _, value in rows:  # the same text is a hit without embedding anything
            if stored == prompt:
                return decode(json.loads(value))
        query = _embed(self.embeddings, prompt)
        best, best_value = -1.0, None
        for _, blob, value in rows:
            vector = list(struct.unpack(f"{len(blob) // 4}f", blob))
            if len(vector) == len(query):
                sim = _cosine(query, vector)
                if sim > best:
                    best, best_value = sim, value
        if best >= self.threshold and best_value is not None:
            return decode(json.loads(best_value))
        return _MISS

    def store(self, namespace: str, options: str, input: Any, value: Any) -> None:
        scope, prompt = self._scope(namespace, options, input)
        if not prompt:
            return
        vector = _embed(self.embeddings, prompt)
        blob = struct.pack(f"{len(vector)}f", *vector)
        with self._lock, self._connect() as db:
            db.execute("INSERT INTO semantic (scope, prompt, vector, created, value) VALUES (?, ?, ?, ?, ?)",
                       (scope, prompt, blob, time.time(), json.dumps(encode(value))))

    def clear(self) -> None:
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM semantic")


def _replay(value: Any) -> Any:
    """A cached value as one stream chunk (a chat message becomes an AssistantChunk)."""
    if isinstance(value, AssistantMessage):
        return AssistantChunk(content=value.content, usage=value.usage, finish_reason=value.finish_reason,
                              model=value.model, id=value.id, tool_call_chunks=[
                                  ToolCallChunk(index=i, id=tc.id, name=tc.name, arguments=json.dumps(tc.arguments))
                                  for i, tc in enumerate(value.tool_calls)])
    return value


def _final(total: Any) -> Any:
    return total.to_message() if isinstance(total, AssistantChunk) else total


class Cached(Runnable[Any, Any]):
    """A step with a cache in front. See the module docstring.

    Args:
        runnable: the model or chain to cache.
        cache: an :class:`ExactCache` or :class:`SemanticCache`; default ``ExactCache()``.
        namespace: override the automatic description of the step (use a new one to invalidate).
    """

    def __init__(self, runnable: Runnable[Any, Any], cache: ExactCache | SemanticCache | None = None,
                 namespace: str | None = None) -> None:
        self.runnable = runnable
        self.cache = cache if cache is not None else ExactCache()
        self.namespace = namespace or namespace_of(runnable)
        self.hits = 0
        self.misses = 0

    def get_name(self) -> str:
        return self.name or f"Cached({self.runnable.get_name()})"

    def _lookup(self, input: Any, kwargs: dict[str, Any]) -> tuple[Callable[[Any], None], Any]:
        """``(store, value)``: the cached value or ``_MISS``, and how to store a computed one."""
        options = _canonical(kwargs)
        value = self.cache.lookup(self.namespace, options, input)
        if value is _MISS:
            self.misses += 1
        else:
            self.hits += 1
        return (lambda computed: self.cache.store(self.namespace, options, input, computed)), value

    def invoke(self, input: Any, **kwargs: Any) -> Any:
        store, value = self._lookup(input, kwargs)
        if value is _MISS:
            value = self.runnable.invoke(input, **kwargs)
            store(value)
        return value

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        store, value = self._lookup(input, kwargs)
        if value is _MISS:
            value = await self.runnable.ainvoke(input, **kwargs)
            store(value)
        return value

    def stream(self, input: Any, **kwargs: Any) -> Iterator[Any]:
        store, value = self._lookup(input, kwargs)
        if value is not _MISS:
            yield _replay(value)
            return
        yield from _summed(self.runnable.stream(input, **kwargs), store)

    async def astream(self, input: Any, **kwargs: Any) -> AsyncIterator[Any]:
        store, value = self._lookup(input, kwargs)
        if value is not _MISS:
            yield _replay(value)
            return
        total: Any = None
        async for chunk in self.runnable.astream(input, **kwargs):
            total = add_chunks(total, chunk)
            yield chunk
        store(_final(total))


def _summed(chunks: Iterator[Any], store: Callable[[Any], None]) -> Iterator[Any]:
    """Pass ``chunks`` on, then store their sum (only if the stream was read to its end)."""
    total: Any = None
    for chunk in chunks:
        total = add_chunks(total, chunk)
        yield chunk
    store(_final(total))


def cached(runnable: Runnable[Any, Any], *, embeddings: Any = None, threshold: float = 0.95,
           path: str | Path | None = None) -> Cached:
    """``Cached(runnable, ExactCache())``, or a semantic cache when ``embeddings`` is given."""
    cache: ExactCache | SemanticCache = (SemanticCache(embeddings, threshold, path) if embeddings is not None
                                         else ExactCache(path))
    return Cached(runnable, cache)


__all__ = ["Cached", "ExactCache", "SemanticCache", "cached", "describe", "namespace_of"]
