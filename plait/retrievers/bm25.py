"""BM25 lexical search with ``bm25s``, persisted in SQLite and kept in sync on upsert and delete.

Texts are tokenized the way Lucene's English analyzer does it, roughly: lower-cased word tokens,
English stopwords removed, Snowball (Porter 2) stemming. The tokens of every chunk live in a
SQLite table (beside the Chroma collection, see :class:`plait.retrievers.chroma.ChromaStore`);
the ``bm25s`` index is rebuilt from them on the first search after a change, also when another
process changed the table (a generation counter in the same file tells). Rebuilding is cheap
(well under a second for ~10k chunks) next to embedding.

Defaults ``k1=0.9, b=0.4`` are Anserini's general-purpose BM25 defaults (not tuned per dataset).

Example::

    from plait.retrievers.bm25 import BM25Index, BM25Retriever
    index = BM25Index()                                   # in memory; pass a path to persist
    index.upsert(["1", "2"], ["Cats purr when happy.", "Dogs bark at strangers."])
    BM25Retriever(index, k=1).invoke("why do cats purr")[0].content
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
from plait.retrievers.base import Filter, Hit, Retriever, matches


class BM25Index:
    """A BM25 index over chunks (id, text, metadata), stored in SQLite (``path``) or in memory.

    Args:
        path: SQLite file; ``None`` keeps everything in memory.
        k1, b: BM25 parameters.
        stemmer: a Snowball language for PyStemmer (``"english"``), or ``None`` for no stemming.
        stopwords: ``"en"`` (bm25s' English list), a list of words, or ``None``.
    """

    def __init__(self, path: str | Path | None = None, *, k1: float = 0.9, b: float = 0.4,
                 stemmer: str | None = "english", stopwords: str | list[str] | None = "en") -> None:
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

    def __repr__(self) -> str:
        return f"BM25Index(path={self.path!r})"

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
        require("bm25s", "chroma", "bm25s")
        import bm25s

        if self.stemmer_language and self._stemmer is None:
            require("Stemmer", "chroma", "PyStemmer")
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

        rows = self._conn().execute("SELECT id, metadata, tokens FROM bm25_docs ORDER BY id").fetchall()
        self._ids = [r[0] for r in rows]
        self._metas = [json.loads(r[1]) for r in rows]
        self._pos = {i: n for n, i in enumerate(self._ids)}
        if rows:
            model = bm25s.BM25(k1=self.k1, b=self.b)
            model.index([r[2].split() for r in rows], show_progress=False)
            self._model = model
        else:
            self._model = None
        self._built_generation = generation

    def hits(self, query: str, k: int = 4, filter: Filter | None = None) -> list[Hit]:
        """The best ``k`` chunks' ids, BM25 scores and metadata, best first, without their texts."""
        import numpy as np

        q_tokens = self.tokenize([query])[0]
        with self._lock:
            self._ensure_built()
            if self._model is None or not q_tokens:
                return []
            scores = self._model.get_scores(q_tokens)
            if filter:
                mask = np.fromiter((matches(m, filter) for m in self._metas), dtype=bool, count=len(self._metas))
                scores = np.where(mask, scores, 0.0)
            n = min(k, int(np.count_nonzero(scores > 0)))
            if n == 0:
                return []
            top = np.argpartition(-scores, n - 1)[:n]
            top = top[np.argsort(-scores[top], kind="stable")]
            return [Hit(self._ids[i], float(scores[i]), self._metas[i]) for i in top.tolist()]

    def metadata(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The metadata of these chunk ids, from memory (ids not in the index are left out)."""
        with self._lock:
            self._ensure_built()
            return {i: self._metas[self._pos[i]] for i in ids if i in self._pos}

    def search(self, query: str, k: int = 4, filter: Filter | None = None) -> list[Document]:
        """The best ``k`` chunks for ``query`` (score = BM25 score; chunks sharing no term are left out)."""
        hits = self.hits(query, k, filter)
        docs = self.get([h.id for h in hits])  # a chunk deleted meanwhile is left out
        scores = {h.id: h.score for h in hits}
        for d in docs:
            d.score = scores[d.id or ""]
        return docs


class BM25Retriever(Retriever):
    """Lexical retriever over a :class:`BM25Index` (scores are BM25 scores).

    Example::

        retriever = store.as_retriever("bm25", k=5)
        retriever.invoke("vitamin D bone density")
    """

    def __init__(self, index: BM25Index, *, k: int = 4, filter: Filter | None = None,
                 score_threshold: float | None = None) -> None:
        super().__init__(k=k, filter=filter, score_threshold=score_threshold)
        self.index = index

    def _retrieve(self, query: str, *, k: int, filter: Filter | None) -> list[Document]:
        return self.index.search(query, k=k, filter=filter)

    def _hits(self, query: str, *, k: int, filter: Filter | None) -> list[Hit]:
        return self.index.hits(query, k, filter)

    def _load(self, ids: Sequence[str]) -> list[Document]:
        return self.index.get(ids)
