"""BM25 over passages of whole documents on tantivy, updated in O(changed), shared across processes.

A drop-in for :class:`plait.retrievers.bm25.BM25Index` (same methods) on a real search engine:
tantivy (Rust, Lucene-class: segments, BM25, block-max WAND top-k, incremental commits). The
choice against SQLite FTS5 and today's bm25s is measured in ``benchmarks/lexical_engines.py``
(see docs/retrieval.md, "Lexical engines compared").

What is indexed. One tantivy document per *passage*: up to ``window`` consecutive chunks of one
document (the chunks a splitter made from it, found by :func:`~plait.retrievers.base.document_key`),
their texts joined with overlaps taken once (:func:`join_chunks`) and scored by BM25 as one text.
Each passage document carries its chunks' ids (``chunk``, indexed), its document (``doc``), its
chunks' metadata (``m``, a JSON field, indexed for filters) and, stored, every chunk's id, text and
metadata. The passage index *is* the store of record: ``get``/``metadata``/``count`` read it.
A hit is a passage, carried by its best chunk (the chunk's own BM25 score for the query, from the
passage index's document frequencies; the first chunk on a tie), with the passage's score.

Updates touch only what changed. An upsert or delete rewrites the passages of the documents it
touches, nothing else (:mod:`plait.retrievers.lexical_passages`). A touched document of up to
``RECUT`` (16) passages is cut again as a whole, exactly as a first write cuts it (near-equal runs of at most ``window`` chunks, as
:mod:`plait.retrievers.bm25` cuts them), so re-ingesting an edited file leaves the passages a
fresh ingest would. In a longer document only the passages that held a touched chunk, plus the
passage a new chunk joins (the one whose first chunk comes last at or before it in text order: a
long document written in batches grows at its end), are cut again. :meth:`rebuild` re-cuts
everything, only when asked.

Filters run in the engine: the filter becomes a tantivy query on ``m`` (equality, ``$in``,
numeric ranges, ``$ne``/``$nin``, ``$and``/``$or``), a superset of the exact answer; the few
passages it returns are then checked chunk by chunk with :func:`~plait.retrievers.base.matches`
(a passage counts if one of its chunks passes; the best passing chunk carries it). Negations on the
per-chunk keys (``chunk``, ``start``, ``end``, ``section``), string ranges, keys that are not
identifiers and strings over 1,000 characters are left to that check alone.

Across processes. A directory holds one tantivy index. Every read first checks ``meta.json``
(one ``stat``) and reloads the searcher when another process committed, so a write is seen at the
next query, with no restart. Tantivy allows one writer per index (a lock file): each write takes it
for the write's duration only, waits for it with backoff up to ``lock_timeout`` seconds (then raises
:class:`TimeoutError` naming the directory), reads the current passages under it and commits once,
so concurrent writers are serialized and none is lost. Commits are atomic; a killed writer leaves
the last commit intact (its lock is an OS lock, released when the process dies).

BM25 parameters are tantivy's (k1 1.2, b 0.75; not settable from Python). Analysis: lower-cased
words of up to 40 characters, Lucene's 33 English stopwords (the list bm25s uses), Snowball English.

Example::

    from plait.retrievers.lexical import LexicalIndex
    index = LexicalIndex()                               # in memory; pass a directory to persist
    index.upsert(["1", "2"], ["Cats purr when happy.", "Dogs bark at strangers."])
    index.search("why do cats purr", k=1)[0].content    # "Cats purr when happy."
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from plait.defaults import require
from plait.messages import Document
from plait.retrievers.base import Filter, Hit, check_filter, matches
from plait.retrievers.lexical_engine import (
    FORMAT,
    TOKENIZER,
    ChunkScorer,
    FileLock,
    Member,
    Passage,
    Passing,
    analyzer,
    exact,
    filter_query,
    join_chunks,
    order,
    partition,
    schema,
)
from plait.retrievers.lexical_passages import Passages

__all__ = ["LexicalIndex", "Passing", "join_chunks", "partition"]


class LexicalIndex:
    """BM25 over passages of whole documents, on tantivy (see the module docstring).

    Args:
        path: the index's directory; ``None`` keeps it in memory (this process only).
        window: the most consecutive chunks of one document scored together (1 scores chunks).
        lock_timeout: seconds a write waits for another process's writer before raising.
        heap_size: the tantivy writer's memory budget in bytes.

    ``passages_written`` counts the passage documents this object wrote to the engine.
    """

    def __init__(self, path: str | Path | None = None, *, window: int = 4, lock_timeout: float = 60.0,
                 heap_size: int = 50_000_000) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window (chunks per passage) must be a positive integer; got {window!r}")
        self.path = Path(path) if path is not None else None
        self.window = window
        self.lock_timeout = lock_timeout
        self.heap_size = heap_size
        self.passages_written = 0
        self._lock = threading.RLock()
        self._idx: Any = None
        self._schema: Any = None
        self._analyzer: Any = None
        self._layout: Passages | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._generation = 0  # bumped whenever the searcher moves to a new commit
        self._ids_cache: dict[str, tuple[int, Passing]] = {}  # filter -> (generation, its chunks)
        self._total: tuple[int, int] | None = None  # (generation, chunks in the index)

    def __repr__(self) -> str:
        return f"LexicalIndex(path={str(self.path) if self.path else None!r}, window={self.window})"

    # --- the engine ------------------------------------------------------------------------------
    def _index(self) -> Any:
        if self._idx is None:
            require("tantivy", "chroma", "tantivy")
            import tantivy as T

            self._schema, self._analyzer = schema(), analyzer()
            self._layout = Passages(self._schema, self._analyzer, self.window)
            if self.path is None:
                idx = T.Index(self._schema)
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                idx = self._open_dir(T)
            idx.register_tokenizer(TOKENIZER, self._analyzer)
            idx.config_reader("manual")
            self._idx = idx
            self._reload(force=True)
        return self._idx

    def _open_dir(self, T: Any) -> Any:
        assert self.path is not None
        marker = self.path / "plait-lexical.json"
        with FileLock(self.path / ".plait-open.lock"):  # two processes creating it at once
            if not T.Index.exists(str(self.path)):
                idx = T.Index(self._schema, path=str(self.path), reuse=False)
                marker.write_text(json.dumps({"format": FORMAT}))
                return idx
            try:
                found = json.loads(marker.read_text()).get("format")
            except (OSError, ValueError):
                found = None
            if found != FORMAT:
                raise ValueError(f"{self.path} holds a search index that is not a plait lexical index of format "
                                 f"{FORMAT} (found {found!r}); delete the folder to start afresh")
            return T.Index.open(str(self.path))

    def _reload(self, force: bool = False) -> None:
        """Point the searcher at the latest commit if there is a newer one (any process's)."""
        stamp = None
        if self.path is None and not force:  # in memory: only this object writes, and reloads after
            return
        if self.path is not None:
            st = os.stat(self.path / "meta.json")
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp == self._stamp and not force:
                return
        for attempt in range(5):
            try:
                self._idx.reload()
                break
            except ValueError:  # a file of the old commit went away meanwhile: read meta.json again
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        self._stamp = stamp
        self._generation += 1

    def _searcher(self) -> Any:
        self._index()
        self._reload()
        return self._idx.searcher()

    def _write(self, change: Any) -> None:
        """Run ``change(writer, searcher)`` holding the index's one writer, then commit once."""
        idx = self._index()
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.01
        while True:
            try:
                writer = idx.writer(heap_size=self.heap_size, num_threads=1)
                break
            except ValueError as e:
                if "LockBusy" not in str(e):
                    raise
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"The lexical index at {self.path} is being written by another writer (tantivy allows one "
                        f"per index); gave up after {self.lock_timeout:g} s. Retry, or stop the other writer.") from e
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        try:
            self._reload(force=True)  # the last writer's commit, read under the lock
            change(writer, idx.searcher())
            writer.commit()
            writer.wait_merging_threads()  # finishes this commit's merges, then lets the lock go
        except BaseException:
            writer.rollback()
            raise
        finally:
            del writer
        self._reload(force=True)

    def close(self) -> None:
        with self._lock:
            self._idx = None
            self._stamp = None

    def _passages(self) -> Passages:
        self._index()
        assert self._layout is not None
        return self._layout

    def _members(self, ids: Sequence[str], texts: bool = True) -> dict[str, Member]:
        wanted = set(ids)
        with self._lock:
            found = self._passages().holding(self._searcher(), list(wanted), texts=texts)
        return {m.id: m for p in found for m in p.members if m.id in wanted}

    # --- writing -----------------------------------------------------------------------------------
    def upsert(self, ids: Sequence[str], texts: Sequence[str],
               metadatas: Sequence[Mapping[str, Any] | None] | None = None) -> None:
        """Insert or replace chunks by id; their passages are rewritten, nothing else."""
        if len(ids) != len(texts) or (metadatas is not None and len(metadatas) != len(ids)):
            raise ValueError("upsert needs as many texts (and metadatas) as ids")
        if not ids:
            return
        metas = metadatas or [None] * len(ids)
        new = {i: Member(i, order(m or {}), t, dict(m or {})) for i, t, m in zip(ids, texts, metas, strict=True)}
        with self._lock:
            self._write(lambda w, s: self._count(self._passages().apply(w, s, new, set())))

    def delete(self, ids: Sequence[str]) -> None:
        """Delete chunks by id (ids not in the index are ignored)."""
        if not ids:
            return
        with self._lock:
            self._write(lambda w, s: self._count(self._passages().apply(w, s, {}, set(ids))))

    def clear(self) -> None:
        with self._lock:
            self._write(lambda w, s: w.delete_all_documents())

    def rebuild(self) -> None:
        """Cut every document into passages again (after many small edits; never done implicitly)."""
        with self._lock:
            self._write(lambda w, s: self._count(self._passages().rewrite_all(w, s)))

    def _count(self, written: int) -> None:
        self.passages_written += written

    # --- reading -----------------------------------------------------------------------------------
    def count(self) -> int:
        """How many chunks the index holds (kept until the next commit)."""
        with self._lock:
            return self._chunks(self._searcher())

    def _chunks(self, searcher: Any) -> int:
        import tantivy as T

        if self._total is None or self._total[0] != self._generation:
            self._total = (self._generation, self._sum_n(searcher, T.Query.all_query()))
        return self._total[1]

    @staticmethod
    def _sum_n(searcher: Any, query: Any) -> int:
        """The chunks of the passages matching ``query`` (each passage's ``n`` summed)."""
        if not searcher.num_docs:
            return 0
        return int(searcher.aggregate(query, {"n": {"sum": {"field": "n"}}})["n"]["value"] or 0)

    def chunk_ids(self, filter: Filter) -> list[str] | None:
        """The ids of every chunk passing ``filter`` (:meth:`Passing.ids`, kept until the next
        commit); None when the engine cannot answer the filter exactly or more pass than it lists at once."""
        found = self.passing(filter)
        return None if found is None else found.ids()

    def passing(self, filter: Filter) -> Passing | None:
        """The chunks passing ``filter`` at the current commit (:class:`Passing`: their count at once,
        their ids when asked), from the engine's indexes alone; kept until the next commit, so a
        filter asked again costs nothing more. None when the engine cannot answer the filter exactly
        (:func:`~plait.retrievers.lexical_engine.exact`: negations, per-chunk keys, string ranges)."""
        check_filter(filter)
        if not exact(filter):
            return None
        key = json.dumps(filter, sort_keys=True, default=str)
        with self._lock:
            searcher = self._searcher()
            cached = self._ids_cache.get(key)
            if cached is None or cached[0] != self._generation:
                where = filter_query(self._idx, filter)
                if where is None:
                    return None
                found = Passing(searcher, self._schema, where, self.window, self._sum_n(searcher, where),
                                self._chunks(searcher))
                if len(self._ids_cache) >= 16:
                    self._ids_cache.clear()
                self._ids_cache[key] = cached = (self._generation, found)
            cached[1].uses += 1
            return cached[1]

    def ids(self) -> list[str]:
        """Every chunk id, sorted (reads the whole index)."""
        return sorted(m.id for p in self._all() for m in p.members)

    def _all(self) -> list[Passage]:
        with self._lock:
            return self._passages().all(self._searcher())

    def get(self, ids: Sequence[str]) -> list[Document]:
        """The stored chunks with these ids (missing ids are left out), in the order given."""
        found = self._members(ids)
        return [Document(id=i, content=found[i].text, metadata=found[i].metadata) for i in ids if i in found]

    def metadata(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The metadata of these chunk ids (ids not in the index are left out)."""
        return {i: m.metadata for i, m in self._members(ids, texts=False).items()}

    def hits(self, query: str, k: int = 4, filter: Filter | None = None) -> list[Hit]:
        """The best ``k`` passages for ``query``, each as its best chunk (id, passage score, metadata)."""
        import tantivy as T

        if filter:
            check_filter(filter)
        with self._lock:
            searcher = self._searcher()
            tokens = self._analyzer.analyze(query)
            if not tokens or searcher.num_docs == 0:
                return []
            q = T.Query.boolean_query([(T.Occur.Should, T.Query.term_query(self._schema, "body", t))
                                       for t in tokens])
            where = filter_query(self._idx, filter) if filter else None
            if where is not None:
                q = T.Query.boolean_query([(T.Occur.Must, q), (T.Occur.Must, T.Query.const_score_query(where, 0.0))])
            out: list[Hit] = []
            offset, limit = 0, k
            scorer = ChunkScorer(searcher, tokens)
            layout = self._passages()
            while len(out) < k:  # more than one round only when the chunk-level check drops passages
                found = searcher.search(q, limit, count=False, offset=offset).hits
                for score, address in found:
                    members = layout.read(searcher, address, texts=False).members
                    if filter:
                        members = [m for m in members if matches(m.metadata, filter)]
                    if members:
                        best = scorer.best(members)
                        out.append(Hit(best.id, float(score), best.metadata))
                        if len(out) == k:
                            break
                if len(found) < limit:
                    break
                offset, limit = offset + limit, limit * 2
            return out

    def search(self, query: str, k: int = 4, filter: Filter | None = None) -> list[Document]:
        """The best ``k`` hits for ``query`` as Documents (``Document.score`` is the passage's BM25 score)."""
        hits = self.hits(query, k, filter)
        docs = {d.id: d for d in self.get([h.id for h in hits])}  # a chunk deleted meanwhile is left out
        out = []
        for h in hits:
            if h.id in docs:
                docs[h.id].score = h.score
                out.append(docs[h.id])
        return out
