"""Passage documents in one tantivy index: how :class:`~plait.retrievers.lexical.LexicalIndex` reads
them and rewrites only those a write touches.

:class:`Passages` holds no state beyond the index's schema, analyzer and window: the searcher and
writer come from the caller, which holds the writer lock (see :mod:`plait.retrievers.lexical` for
the layout and the update rule; :mod:`plait.retrievers.lexical_engine` for the schema and filters).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from plait.retrievers.base import CHUNK_KEYS
from plait.retrievers.lexical_engine import (
    Member,
    Passage,
    doc_string,
    first,
    indexable,
    join_chunks,
    partition,
    sort_key,
)

RECUT = 16  # a touched document with at most this many passages is cut again whole
_BATCH = 1000  # terms per term-set query


class Passages:
    """Reads stored passages and rewrites the ones a write touches.

    Args:
        schema, analyzer: the index's (:func:`~plait.retrievers.lexical_engine.schema`, ``analyzer()``).
        window: the most consecutive chunks of one document in a passage.
    """

    def __init__(self, schema: Any, analyzer: Any, window: int) -> None:
        self.schema = schema
        self.analyzer = analyzer
        self.window = window

    # --- reading -----------------------------------------------------------------------------------
    def read(self, searcher: Any, address: Any, texts: bool = True, tokens: bool = True) -> Passage:
        """A stored passage; ``texts``/``tokens`` False leave its chunks' texts/tokens empty (faster)."""
        stored = searcher.doc(address)
        info = json.loads(stored["info"][0])
        n = len(info["m"])
        words = json.loads(stored["tokens"][0]) if tokens and n > 1 else [""] * n
        text = json.loads(stored["texts"][0]) if texts else [""] * n
        members = [Member(i, o, t, m, w) for (i, o, m), t, w in zip(info["m"], text, words, strict=True)]
        return Passage(stored["pid"][0], info["doc"], members)

    def holding(self, searcher: Any, ids: Sequence[str], texts: bool = True) -> list[Passage]:
        """The passages holding any of these chunk ids (each once)."""
        import tantivy as T

        unique = list(dict.fromkeys(ids))
        out: dict[str, Passage] = {}
        for start in range(0, len(unique), _BATCH):
            part = unique[start:start + _BATCH]
            query = T.Query.term_set_query(self.schema, "chunk", part)
            for _, address in searcher.search(query, len(part), count=False).hits:
                p = self.read(searcher, address, texts=texts, tokens=texts)
                out[p.pid] = p
        return list(out.values())

    def all(self, searcher: Any) -> list[Passage]:
        import tantivy as T

        hits = searcher.search(T.Query.all_query(), max(1, searcher.num_docs), count=False).hits
        return [self.read(searcher, a) for _, a in hits]

    # --- writing -----------------------------------------------------------------------------------
    def apply(self, writer: Any, searcher: Any, new: dict[str, Member], gone: set[str]) -> int:
        """Rewrite the passages that hold a touched chunk or that a new chunk joins.

        Returns: the passage documents written.
        """
        affected = {p.pid: p for p in self.holding(searcher, list(set(new) | gone))}
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
        written = 0
        for pid, members in keep.items():
            if members:
                written += self.add(writer, affected[pid].doc, members)
        for doc, members in fresh.items():
            written += self.add(writer, doc, members)
        return written

    def rewrite_all(self, writer: Any, searcher: Any) -> int:
        """Cut every document into passages again; returns the passage documents written."""
        docs: dict[str, list[Member]] = {}
        for p in self.all(searcher):
            docs.setdefault(p.doc, []).extend(p.members)
        writer.delete_all_documents()
        return sum(self.add(writer, doc, members) for doc, members in docs.items())

    def _docs_present(self, searcher: Any, docs: Sequence[str]) -> set[str]:
        import tantivy as T

        out: set[str] = set()
        for start in range(0, len(docs), _BATCH):
            part = list(docs[start:start + _BATCH])
            query = T.Query.term_set_query(self.schema, "doc", part)
            if searcher.search(query, 1, count=True).count == 0:  # all new: the usual case when ingesting
                continue
            agg = searcher.aggregate(query, {"d": {"terms": {"field": "doc", "size": len(part)}}})
            out.update(b["key"] for b in agg["d"]["buckets"])
        return out

    def _document(self, searcher: Any, doc: str) -> list[Passage] | None:
        """All passages of ``doc``, or None when it has more than ``RECUT`` of them."""
        import tantivy as T

        hits = searcher.search(T.Query.term_query(self.schema, "doc", doc), RECUT + 1, count=False).hits
        return None if len(hits) > RECUT else [self.read(searcher, a) for _, a in hits]

    def _route(self, searcher: Any, doc: str, order: int | None) -> Passage | None:
        """The passage of ``doc`` a chunk at ``order`` joins: the last one starting at or before it
        (the document's first passage if none does); with ``order`` None, the document's last."""
        import tantivy as T

        in_doc = T.Query.term_query(self.schema, "doc", doc)
        for bounded in ([True, False] if order is not None else [False]):
            q = in_doc
            if bounded:
                upto = T.Query.range_query(self.schema, "first", T.FieldType.Integer, None, order)
                q = T.Query.boolean_query([(T.Occur.Must, in_doc), (T.Occur.Must, upto)])
            desc = bounded or order is None
            hits = searcher.search(q, 1, count=False, order_by_field="first",
                                   order=T.Order.Desc if desc else T.Order.Asc).hits
            if hits:
                return self.read(searcher, hits[0][1])
        return None

    def add(self, writer: Any, doc: str, members: list[Member]) -> int:
        """Cut one document's chunks (or a run of them) into passages and add them; returns how many."""
        import tantivy as T

        runs = partition(sorted(members, key=sort_key), self.window)
        for run in runs:
            if len(run) > 1:  # to pick the best chunk at query time without analysing texts again
                run = [m if m.tokens else m._replace(tokens=" ".join(self.analyzer.analyze(m.text))) for m in run]
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
        return len(runs)
