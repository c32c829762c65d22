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
touches, nothing else. A touched document of up to ``RECUT`` (16) passages is cut again as a
whole, exactly as a first write cuts it (near-equal runs of at most ``window`` chunks, as
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
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from plait.defaults import require
from plait.messages import Document
from plait.retrievers.base import CHUNK_KEYS, Filter, Hit, check_filter, matches
from plait.retrievers.lexical_engine import (
    FORMAT,
    TOKENIZER,
    ChunkScorer,
    FileLock,
    Member,
    Passage,
    analyzer,
    doc_string,
    filter_query,
    first,
    indexable,
    join_chunks,
    order,
    partition,
    schema,
    sort_key,
)

RECUT = 16  # a touched document with at most this many passages is cut again whole

__all__ = ["LexicalIndex", "join_chunks", "partition"]


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
        self._stamp: tuple[int, int, int] | None = None

    def __repr__(self) -> str:
        return f"LexicalIndex(path={str(self.path) if self.path else None!r}, window={self.window})"

    # --- the engine ------------------------------------------------------------------------------
    def _index(self) -> Any:
        if self._idx is None:
            require("tantivy", "chroma", "tantivy")
            import tantivy as T

            self._schema, self._analyzer = schema(), analyzer()
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

    # --- reading passages ------------------------------------------------------------------------
    def _passage(self, searcher: Any, address: Any, texts: bool = True, tokens: bool = True) -> Passage:
        """A stored passage; ``texts``/``tokens`` False leave its chunks' texts/tokens empty (faster)."""
        stored = searcher.doc(address)
        info = json.loads(stored["info"][0])
        n = len(info["m"])
        words = json.loads(stored["tokens"][0]) if tokens and n > 1 else [""] * n
        text = json.loads(stored["texts"][0]) if texts else [""] * n
        members = [Member(i, o, t, m, w) for (i, o, m), t, w in zip(info["m"], text, words, strict=True)]
        return Passage(stored["pid"][0], info["doc"], members)

    def _passages(self, searcher: Any, field: str, values: Sequence[Any], limit: int,
                  texts: bool = True) -> list[Passage]:
        import tantivy as T

        if not values or limit < 1:
            return []
        query = T.Query.term_set_query(self._schema, field, list(values))
        hits = searcher.search(query, limit, count=False).hits
        return [self._passage(searcher, a, texts=texts, tokens=texts) for _, a in hits]

    def _members(self, ids: Sequence[str], texts: bool = True) -> dict[str, Member]:
        with self._lock:
            searcher = self._searcher()
            wanted = set(ids)
            unique = list(wanted)
            out: dict[str, Member] = {}
            for start in range(0, len(unique), 1000):
                part = unique[start:start + 1000]
                for p in self._passages(searcher, "chunk", part, len(part), texts=texts):
                    out.update((m.id, m) for m in p.members if m.id in wanted)
            return out

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
            self._write(lambda w, s: self._apply(w, s, new, set()))

    def delete(self, ids: Sequence[str]) -> None:
        """Delete chunks by id (ids not in the index are ignored)."""
        if not ids:
            return
        with self._lock:
            self._write(lambda w, s: self._apply(w, s, {}, set(ids)))

    def clear(self) -> None:
        with self._lock:
            self._write(lambda w, s: w.delete_all_documents())

    def rebuild(self) -> None:
        """Cut every document into passages again (after many small edits; never done implicitly)."""
        def change(writer: Any, searcher: Any) -> None:
            docs: dict[str, list[Member]] = {}
            for p in self._all():
                docs.setdefault(p.doc, []).extend(p.members)
            writer.delete_all_documents()
            for doc, members in docs.items():
                self._add(writer, doc, members)

        with self._lock:
            self._write(change)

    def _apply(self, writer: Any, searcher: Any, new: dict[str, Member], gone: set[str]) -> None:
        """Rewrite the passages that hold a touched chunk or that a new chunk joins."""
        touched = list(set(new) | gone)
        affected: dict[str, Passage] = {}
        for start in range(0, len(touched), 1000):
            part = touched[start:start + 1000]
            affected.update((p.pid, p) for p in self._passages(searcher, "chunk", part, len(part)))
        keep = {pid: [m for m in p.members if m.id not in new and m.id not in gone] for pid, p in affected.items()}
        groups: dict[str, list[Member]] = {}
        for m in new.values():
            groups.setdefault(doc_string(m.id, m.metadata), []).append(m)
        known = {p.doc for p in affected.values()}
        present = known | self._docs_present(searcher, [d for d in groups if d not in known])
        # new documents, and touched documents of at most RECUT passages, are cut again as a whole
        fresh = {doc: members for doc, members in groups.items() if doc not in present}
        for doc in present:
            passages = self._document(searcher, doc)
            if passages is None:
                continue
            affected.update((p.pid, p) for p in passages)
            fresh[doc] = [m for p in passages for m in keep.pop(p.pid, p.members)] + groups.pop(doc, [])
        # in a longer document, only the passages a new chunk joins are cut again
        for doc, members in groups.items():
            if doc not in present:
                continue
            last = self._route(searcher, doc, None)  # a document written in batches grows at its end
            for m in sorted(members, key=sort_key):
                target = last if last is not None and m.order >= first(last) else self._route(searcher, doc, m.order)
                if target is None:  # the document's passages were all emptied above: start afresh
                    fresh.setdefault(doc, []).append(m)
                    continue
                if target.pid not in affected:
                    affected[target.pid] = target
                    keep[target.pid] = list(target.members)
                keep[target.pid].append(m)
        for pid in affected:
            writer.delete_documents_by_term("pid", pid)
        for pid, members in keep.items():
            if members:
                self._add(writer, affected[pid].doc, members)
        for doc, members in fresh.items():
            self._add(writer, doc, members)

    def _docs_present(self, searcher: Any, docs: Sequence[str]) -> set[str]:
        import tantivy as T

        out: set[str] = set()
        for start in range(0, len(docs), 1000):
            part = list(docs[start:start + 1000])
            query = T.Query.term_set_query(self._schema, "doc", part)
            if searcher.search(query, 1, count=True).count == 0:  # all new: the usual case when ingesting
                continue
            agg = searcher.aggregate(query, {"d": {"terms": {"field": "doc", "size": len(part)}}})
            out.update(b["key"] for b in agg["d"]["buckets"])
        return out

    def _document(self, searcher: Any, doc: str) -> list[Passage] | None:
        """All passages of ``doc``, or None when it has more than ``RECUT`` of them."""
        import tantivy as T

        hits = searcher.search(T.Query.term_query(self._schema, "doc", doc), RECUT + 1, count=False).hits
        return None if len(hits) > RECUT else [self._passage(searcher, a) for _, a in hits]

    def _route(self, searcher: Any, doc: str, order: int | None) -> Passage | None:
        """The passage of ``doc`` a chunk at ``order`` joins: the last one starting at or before it
        (the document's first passage if none does); with ``order`` None, the document's last."""
        import tantivy as T

        in_doc = T.Query.term_query(self._schema, "doc", doc)
        for bounded in ([True, False] if order is not None else [False]):
            q = in_doc
            if bounded:
                upto = T.Query.range_query(self._schema, "first", T.FieldType.Integer, None, order)
                q = T.Query.boolean_query([(T.Occur.Must, in_doc), (T.Occur.Must, upto)])
            desc = bounded or order is None
            hits = searcher.search(q, 1, count=False, order_by_field="first",
                                   order=T.Order.Desc if desc else T.Order.Asc).hits
            if hits:
                return self._passage(searcher, hits[0][1])
        return None

    def _add(self, writer: Any, doc: str, members: list[Member]) -> None:
        """Cut one document's chunks (or a run of them) into passages and add them."""
        import tantivy as T

        members = sorted(members, key=sort_key)
        for run in partition(members, self.window):
            if len(run) > 1:  # to pick the best chunk at query time without analysing texts again
                run = [m if m.tokens else m._replace(tokens=" ".join(self._analyzer.analyze(m.text))) for m in run]
            d = T.Document()
            d.add_text("pid", uuid.uuid4().hex)
            d.add_text("doc", doc)
            for m in run:
                d.add_text("chunk", m.id)
            d.add_integer("first", run[0].order)
            d.add_unsigned("n", len(run))
            text = run[0].text if len(run) == 1 else join_chunks([m.text for m in run], [m.metadata for m in run])
            d.add_text("body", text)
            shared = indexable({k: v for k, v in run[0].metadata.items() if k not in CHUNK_KEYS})
            if shared:
                d.add_json("m", shared)
            for m in run:
                own = indexable({k: v for k, v in m.metadata.items() if k in CHUNK_KEYS})
                if own:
                    d.add_json("m", own)
            info = {"doc": doc, "m": [[m.id, m.order, m.metadata] for m in run]}
            d.add_bytes("info", json.dumps(info).encode("utf-8"))
            d.add_bytes("texts", json.dumps([m.text for m in run]).encode("utf-8"))
            if len(run) > 1:
                d.add_bytes("tokens", json.dumps([m.tokens for m in run]).encode("utf-8"))
            writer.add_document(d)
            self.passages_written += 1

    # --- reading -----------------------------------------------------------------------------------
    def count(self) -> int:
        """How many chunks the index holds."""
        import tantivy as T

        with self._lock:
            agg = self._searcher().aggregate(T.Query.all_query(), {"n": {"sum": {"field": "n"}}})
            return int(agg["n"]["value"] or 0)

    def ids(self) -> list[str]:
        """Every chunk id, sorted (reads the whole index)."""
        return sorted(m.id for p in self._all() for m in p.members)

    def _all(self) -> list[Passage]:
        import tantivy as T

        with self._lock:
            searcher = self._searcher()
            hits = searcher.search(T.Query.all_query(), max(1, searcher.num_docs), count=False).hits
            return [self._passage(searcher, a) for _, a in hits]

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
            while len(out) < k:  # more than one round only when the chunk-level check drops passages
                found = searcher.search(q, limit, count=False, offset=offset).hits
                for score, address in found:
                    members = self._passage(searcher, address, texts=False).members
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
