"""The bm25s index plait used before tantivy: the "bm25s (today)" baseline of ``lexical_engines.py``.

``bm25s`` over tokens kept in SQLite, rebuilt in full on the first search after any change. Nothing
in plait opens it; it needs the ``bench`` extra (``bm25s``, ``PyStemmer``). It scores passages the
same way as :class:`plait.retrievers.lexical.LexicalIndex` (:func:`~plait.retrievers.lexical_engine.partition`
of a document's chunks, joined by :func:`~plait.retrievers.lexical_engine.join_chunks`), with
Anserini's ``k1=0.9, b=0.4``. Measurements: ``docs/retrieval.md``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from plait.defaults import require
from plait.messages import Document
from plait.retrievers.base import Filter, Hit, document_key, matches
from plait.retrievers.lexical_engine import join_chunks, partition


class BM25Index:
    """The former lexical side (bm25s, rebuilt on the first search after a change); a benchmark baseline.

    Chunks (id, text, metadata) are stored in SQLite (``path``) or in memory.

    Args:
        path: SQLite file; ``None`` keeps everything in memory.
        k1, b: BM25 parameters.
        stemmer: a Snowball language for PyStemmer (``"english"``), or ``None`` for no stemming.
        stopwords: ``"en"`` (bm25s' English list), a list of words, or ``None``.
        window: the most consecutive chunks of one document scored together as a passage
            (default 4; 1 scores each chunk alone; see the module docstring).
    """

    def __init__(self, path: str | Path | None = None, *, k1: float = 0.9, b: float = 0.4,
                 stemmer: str | None = "english", stopwords: str | list[str] | None = "en",
                 window: int = 4) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window (chunks per BM25 passage) must be a positive integer; got {window!r}")
        self.window = window
        self.path = str(path) if path is not None else None
        self.k1, self.b = k1, b
        self.stemmer_language = stemmer
        self.stopwords = stopwords
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._stemmer: Any = None
        self._built_generation = -1
        self._model: Any = None
        self._ids: list[str] = []
        self._metas: list[dict[str, Any]] = []
        self._pos: dict[str, int] = {}
        self._passage_model: Any = None  # BM25 over passages (window > 1)
        self._passage_of: Any = None  # chunk position -> passage position
        self._members: list[list[int]] = []  # passage position -> its chunks' positions, in text order

    def __repr__(self) -> str:
        return f"BM25Index(path={self.path!r}, window={self.window})"

    # --- storage ---------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path is not None:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path or ":memory:", check_same_thread=False, timeout=30)
            if self.path is not None:
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS bm25_docs (id TEXT PRIMARY KEY, content TEXT NOT NULL, "
                       "metadata TEXT NOT NULL, tokens TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS bm25_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            db.execute("INSERT OR IGNORE INTO bm25_meta VALUES ('generation', 0)")
            db.commit()
            self._db = db
        return self._db

    def _generation(self) -> int:
        row = self._conn().execute("SELECT value FROM bm25_meta WHERE key='generation'").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """The tokens BM25 sees: lower-cased words, stopwords removed, stemmed."""
        require("bm25s", "bench", "bm25s")
        import bm25s

        if self.stemmer_language and self._stemmer is None:
            require("Stemmer", "bench", "PyStemmer")
            import Stemmer

            self._stemmer = Stemmer.Stemmer(self.stemmer_language)
        out = bm25s.tokenize(list(texts), stopwords=self.stopwords, stemmer=self._stemmer,
                             return_ids=False, show_progress=False, allow_empty=False)
        return [list(t) for t in out]

    def upsert(self, ids: Sequence[str], texts: Sequence[str],
               metadatas: Sequence[Mapping[str, Any] | None] | None = None) -> None:
        """Insert or replace chunks by id."""
        if len(ids) != len(texts) or (metadatas is not None and len(metadatas) != len(ids)):
            raise ValueError("upsert needs as many texts (and metadatas) as ids")
        if not ids:
            return
        tokens = self.tokenize(texts)
        metas = metadatas or [None] * len(ids)
        rows = [(i, t, json.dumps(dict(m or {})), " ".join(tok))
                for i, t, m, tok in zip(ids, texts, metas, tokens, strict=True)]
        with self._lock:
            db = self._conn()
            with db:
                db.executemany("INSERT OR REPLACE INTO bm25_docs VALUES (?, ?, ?, ?)", rows)
                db.execute("UPDATE bm25_meta SET value = value + 1 WHERE key='generation'")

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._lock:
            db = self._conn()
            with db:
                db.executemany("DELETE FROM bm25_docs WHERE id = ?", [(i,) for i in ids])
                db.execute("UPDATE bm25_meta SET value = value + 1 WHERE key='generation'")

    def clear(self) -> None:
        with self._lock:
            db = self._conn()
            with db:
                db.execute("DELETE FROM bm25_docs")
                db.execute("UPDATE bm25_meta SET value = value + 1 WHERE key='generation'")

    def count(self) -> int:
        with self._lock:
            return int(self._conn().execute("SELECT COUNT(*) FROM bm25_docs").fetchone()[0])

    def ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn().execute("SELECT id FROM bm25_docs ORDER BY id")]

    def get(self, ids: Sequence[str]) -> list[Document]:
        """The stored chunks with these ids (missing ids are left out), in the order given."""
        with self._lock:
            db = self._conn()
            found: dict[str, Document] = {}
            for start in range(0, len(ids), 500):
                part = list(ids[start:start + 500])
                q = f"SELECT id, content, metadata FROM bm25_docs WHERE id IN ({','.join('?' * len(part))})"
                for i, content, meta in db.execute(q, part):
                    found[i] = Document(id=i, content=content, metadata=json.loads(meta))
        return [found[i] for i in ids if i in found]

    # --- search ----------------------------------------------------------------------------------
    def _ensure_built(self) -> None:
        generation = self._generation()
        if generation == self._built_generation:
            return
        import bm25s

        columns = "id, metadata, tokens" + (", content" if self.window > 1 else "")
        rows = self._conn().execute(f"SELECT {columns} FROM bm25_docs ORDER BY id").fetchall()
        self._ids = [r[0] for r in rows]
        self._metas = [json.loads(r[1]) for r in rows]
        self._pos = {i: n for n, i in enumerate(self._ids)}
        self._model = self._passage_model = None
        if rows:
            tokens = [r[2].split() for r in rows]
            model = bm25s.BM25(k1=self.k1, b=self.b)
            model.index(tokens, show_progress=False)
            self._model = model
            if self.window > 1:
                self._build_passages(tokens, [r[3] for r in rows])
        self._built_generation = generation

    def _build_passages(self, tokens: list[list[str]], contents: list[str]) -> None:
        """Group chunks into documents, documents into passages; index each passage's whole text."""
        import bm25s
        import numpy as np

        groups: dict[Any, list[int]] = {}
        for n, (cid, meta) in enumerate(zip(self._ids, self._metas, strict=True)):
            groups.setdefault(document_key(cid, meta), []).append(n)
        self._members = []
        for members in groups.values():
            members.sort(key=lambda n: _text_order(self._metas[n]))
            self._members += [list(run) for run in partition(members, self.window)]  # near-equal runs
        passage_tokens: list[list[str]] = []
        joined: list[tuple[int, str]] = []  # passages of several chunks: their text, to tokenize again
        for d, members in enumerate(self._members):
            if len(members) == 1:
                passage_tokens.append(tokens[members[0]])
            else:
                passage_tokens.append([])
                joined.append((d, join_chunks([contents[n] for n in members], [self._metas[n] for n in members])))
        if joined:
            for (d, _), toks in zip(joined, self.tokenize([text for _, text in joined]), strict=True):
                passage_tokens[d] = toks
        model = bm25s.BM25(k1=self.k1, b=self.b)
        model.index(passage_tokens, show_progress=False)
        self._passage_model = model
        self._passage_of = np.empty(len(tokens), dtype=np.int64)
        for d, members in enumerate(self._members):
            self._passage_of[members] = d

    def hits(self, query: str, k: int = 4, filter: Filter | None = None) -> list[Hit]:
        """The best ``k`` hits (chunk id, BM25 score, metadata), best first, without their texts.

        With ``window > 1`` each hit is a passage: its best chunk, with the passage's score.
        """
        import numpy as np

        q_tokens = self.tokenize([query])[0]
        with self._lock:
            self._ensure_built()
            if self._model is None or not q_tokens:
                return []
            scores = self._model.get_scores(q_tokens)
            mask = None
            if filter:
                mask = np.fromiter((matches(m, filter) for m in self._metas), dtype=bool, count=len(self._metas))
                scores = np.where(mask, scores, 0.0)
            if self.window > 1:
                return self._passage_hits(q_tokens, scores, mask, k)
            return [Hit(self._ids[i], float(scores[i]), self._metas[i]) for i in _top(scores, k)]

    def _passage_hits(self, q_tokens: list[str], chunk_scores: Any, mask: Any, k: int) -> list[Hit]:
        import numpy as np

        scores = self._passage_model.get_scores(q_tokens)
        if mask is not None:  # a passage counts if any of its chunks passes the filter
            allowed = np.bincount(self._passage_of, weights=mask, minlength=len(self._members)) > 0
            scores = np.where(allowed, scores, 0.0)
        out = []
        for d in _top(scores, k):
            members = self._members[d]
            if mask is not None:
                members = [n for n in members if mask[n]]
            # the best chunk; ties (e.g. no chunk matches alone) go to the earliest in the text
            _, best = max(enumerate(members), key=lambda p: (chunk_scores[p[1]], -p[0]))
            out.append(Hit(self._ids[best], float(scores[d]), self._metas[best]))
        return out

    def metadata(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The metadata of these chunk ids, from memory (ids not in the index are left out)."""
        with self._lock:
            self._ensure_built()
            return {i: self._metas[self._pos[i]] for i in ids if i in self._pos}

    def search(self, query: str, k: int = 4, filter: Filter | None = None) -> list[Document]:
        """The best ``k`` hits for ``query`` as Documents (see :meth:`hits`; no shared term, no hit)."""
        hits = self.hits(query, k, filter)
        docs = self.get([h.id for h in hits])  # a chunk deleted meanwhile is left out
        scores = {h.id: h.score for h in hits}
        for d in docs:
            d.score = scores[d.id or ""]
        return docs


def _top(scores: Any, k: int) -> list[int]:
    """Positions of the ``k`` highest positive scores, best first."""
    import numpy as np

    n = min(k, int(np.count_nonzero(scores > 0)))
    if n == 0:
        return []
    top = np.argpartition(-scores, n - 1)[:n]
    return top[np.argsort(-scores[top], kind="stable")].tolist()


def _text_order(meta: Mapping[str, Any]) -> tuple[int, int]:
    start, chunk = meta.get("start"), meta.get("chunk")
    return (start if isinstance(start, int) else -1, chunk if isinstance(chunk, int) else -1)
