"""The tantivy side of :mod:`plait.retrievers.lexical`: schema, analysis, passage layout, filters.

:class:`~plait.retrievers.lexical.LexicalIndex` holds the state (the index, the writer lock, the
searcher); :mod:`plait.retrievers.lexical_passages` reads and rewrites passage documents; this
module holds the layout of what they hold and how a query and a filter become tantivy queries.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from plait.retrievers.base import CHUNK_KEYS, Filter, document_key

TOKENIZER = "plait_en"
FORMAT = 2  # the passage layout below; another one needs a new folder
K1, B = 1.2, 0.75  # tantivy's BM25 parameters, used again to pick a passage's best chunk
_MAX_VALUE_CHARS = 1000  # longer string metadata is stored but not indexed for filters
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


class Member(NamedTuple):
    """A chunk inside a passage (``tokens``: its analyzed words, kept where the passage has several)."""

    id: str
    order: int
    text: str
    metadata: dict[str, Any]
    tokens: str = ""


class Passage(NamedTuple):
    pid: str
    doc: str
    members: list[Member]


def analyzer() -> Any:
    """The text analysis of the ``body`` field (and of queries)."""
    import tantivy as T

    return (T.TextAnalyzerBuilder(T.Tokenizer.simple()).filter(T.Filter.remove_long(40))
            .filter(T.Filter.lowercase()).filter(T.Filter.stopword("english"))
            .filter(T.Filter.stemmer("english")).build())


def schema() -> Any:
    """One tantivy document per passage (see :mod:`plait.retrievers.lexical`)."""
    import tantivy as T

    sb = T.SchemaBuilder()
    sb.add_text_field("pid", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("doc", fast=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("chunk", fast=True, tokenizer_name="raw", index_option="basic")
    sb.add_integer_field("first", indexed=True, fast=True)
    sb.add_unsigned_field("n", fast=True)
    sb.add_text_field("body", tokenizer_name=TOKENIZER, index_option="freq")
    sb.add_json_field("m", fast=True, tokenizer_name="raw", index_option="basic")
    # stored, as JSON: {"doc", "m": [[id, order, metadata] per chunk]}, the chunks' texts, their tokens
    for name in ("info", "texts", "tokens"):  # apart, so that each read parses only what it needs
        sb.add_bytes_field(name, stored=True, indexed=False)
    return sb.build()


def exact(where: Filter) -> bool:
    """Whether :func:`filter_query` matches exactly the passages whose chunks all pass ``where``:
    equality, ``$in`` and numeric ranges on document keys (not per-chunk ones), joined by
    ``$and``/``$or``. A passage's chunks share their document's metadata, so then every chunk of a
    matching passage passes, and nothing has to be checked chunk by chunk."""
    for key, value in where.items():
        if key in ("$and", "$or"):
            if not all(exact(s) for s in value):
                return False
            continue
        op, arg = next(iter(value.items())) if isinstance(value, Mapping) else ("$eq", value)
        if key in CHUNK_KEYS or not _KEY.fullmatch(key) or op in ("$ne", "$nin"):
            return False
        values = arg if op == "$in" else [arg]
        if op in _OPS:
            if isinstance(arg, bool) or not isinstance(arg, (int, float)) or not math.isfinite(arg) \
                    or abs(arg) >= 2 ** 53 or "e" in repr(float(arg)):
                return False
        elif not all(isinstance(v, (str, int, float, bool)) and not (isinstance(v, str) and len(v) > _MAX_VALUE_CHARS)
                     and not (isinstance(v, float) and not math.isfinite(v)) for v in values):
            return False
    return True


def filter_query(index: Any, where: Filter) -> Any:
    """A tantivy query matching at least the passages with a chunk passing ``where`` (None: all)."""
    import tantivy as T

    parts = []
    for key, value in where.items():
        if key in ("$and", "$or"):
            subs = [filter_query(index, s) for s in value]
            if key == "$or":
                q = None if any(s is None for s in subs) else any_of(subs)
            else:
                kept = [s for s in subs if s is not None]
                q = T.Query.boolean_query([(T.Occur.Must, s) for s in kept]) if kept else None
        elif isinstance(value, Mapping):
            q = _condition(index, key, *next(iter(value.items())))
        else:
            q = _condition(index, key, "$eq", value)
        if q is not None:
            parts.append(q)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else T.Query.boolean_query([(T.Occur.Must, p) for p in parts])

def _condition(index: Any, key: str, op: str, arg: Any) -> Any:
    import tantivy as T

    if not _KEY.fullmatch(key):
        return None
    if op in ("$eq", "$in"):
        terms = [_term(index, key, v) for v in (arg if op == "$in" else [arg])]
        return None if any(t is None for t in terms) else any_of(terms)
    if op in ("$ne", "$nin"):
        if key in CHUNK_KEYS:  # "no chunk has it" would drop passages where only some chunk has it
            return None
        terms = [_term(index, key, v) for v in (arg if op == "$nin" else [arg])]
        if any(t is None for t in terms):
            return None
        return T.Query.boolean_query([(T.Occur.Must, T.Query.all_query()), (T.Occur.MustNot, any_of(terms))])
    if isinstance(arg, bool) or not isinstance(arg, (int, float)) or not math.isfinite(arg) or abs(arg) >= 2 ** 53:
        return None  # string ranges: checked per chunk only
    text = repr(float(arg))
    if "e" in text:  # the query parser reads plain decimals: widen to a whole number
        text = f"{math.floor(arg) if op in ('$gt', '$gte') else math.ceil(arg)}.0"
        op = "$gte" if op in ("$gt", "$gte") else "$lte"
    return index.parse_query(f"m.{key}:{_OPS[op]}{text}")

def _term(index: Any, key: str, value: Any) -> Any:
    import tantivy as T

    if isinstance(value, str) and len(value) > _MAX_VALUE_CHARS:
        return None
    if not isinstance(value, (str, int, float, bool)) or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return T.Query.term_query(index.schema, f"m.{key}", value)


BUCKETS = 65_000  # tantivy's limit on the buckets of one aggregation (AggregationLimits' default)


class Passing:
    """The chunks passing one filter at one commit of the index (:meth:`LexicalIndex.passing
    <plait.retrievers.lexical.LexicalIndex.passing>`), read from the engine's indexes alone.

    ``count`` (chunks passing) and ``total`` (chunks in the index) are known at once: one sum
    over the matching passages (0.3 ms at 300,000 chunks). The ids are read only when asked:
    :meth:`ids` lists them all (a terms aggregation over the ``chunk`` fast field: 50-130 ms for
    30,000 at 300,000 chunks, loaded machine), :meth:`members` tells which of some candidates pass,
    from that list once it is read, else by a query restricted to the candidates (~17 ms for 3,000).
    A filter asked again at the same commit reads the whole list once and answers from a set after.
    """

    def __init__(self, searcher: Any, schema: Any, where: Any, window: int, count: int, total: int) -> None:
        self._searcher = searcher
        self._schema = schema
        self._where = where
        self.window = window
        self.count = count
        self.total = total
        self.uses = 0
        self._ids: list[str] | None = None
        self._set: frozenset[str] | None = None

    def ids(self) -> list[str] | None:
        """Every passing chunk's id; None when more pass than one aggregation may list (:data:`BUCKETS`)."""
        if self._ids is None and self.count <= BUCKETS:
            self._ids = self._terms(self._where, self.count) if self.count else []
            self._set = frozenset(self._ids)
        return self._ids

    def members(self, candidates: Sequence[str]) -> set[str] | frozenset[str]:
        """The candidates that pass (or a superset: every passing id, once read)."""
        if self._set is None and self.uses > 1:
            self.ids()
        if self._set is not None:
            return self._set
        import tantivy as T

        wanted = list(dict.fromkeys(candidates))
        found: set[str] = set()
        step = max(1, BUCKETS // self.window)  # one aggregation lists the chunks of ``step`` passages
        for start in range(0, len(wanted) if self.count else 0, step):
            part = wanted[start:start + step]
            q = T.Query.boolean_query([(T.Occur.Must, self._where),
                                       (T.Occur.Must, T.Query.term_set_query(self._schema, "chunk", part))])
            found.update(self._terms(q, min(BUCKETS, self.window * len(part))))
        return found & set(wanted)

    def _terms(self, query: Any, size: int) -> list[str]:
        agg = self._searcher.aggregate(query, {"c": {"terms": {"field": "chunk", "size": size}}})
        return [b["key"] for b in agg["c"]["buckets"]]


class ChunkScorer:
    """Picks a passage's best chunk: BM25 of each chunk alone, with the passage index's statistics."""

    def __init__(self, searcher: Any, tokens: list[str]) -> None:
        n = max(1, searcher.num_docs)
        self.idf = {t: math.log(1 + (n - df + 0.5) / (df + 0.5))
                    for t in set(tokens) for df in [searcher.doc_freq("body", t)]}
        # the query's terms as whole words of a space-separated token string, found in one scan
        terms = "|".join(re.escape(t) for t in sorted(self.idf, key=len, reverse=True))
        self.pattern = re.compile(f"(?<= )(?:{terms})(?= )")

    def best(self, members: list[Member]) -> Member:
        if len(members) == 1:
            return members[0]
        counts = [Counter(self.pattern.findall(f" {m.tokens} ")) for m in members]
        lengths = [m.tokens.count(" ") + 1 for m in members]
        avg = max(1.0, sum(lengths) / len(lengths))
        scores = [sum(self.idf[t] * tf * (K1 + 1) / (tf + K1 * (1 - B + B * n / avg)) for t, tf in c.items())
                  for c, n in zip(counts, lengths, strict=True)]
        return members[max(range(len(members)), key=lambda i: (scores[i], -i))]


class FileLock:
    """An exclusive OS lock on a file for a ``with`` block (released if the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1

    def __enter__(self) -> FileLock:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): tantivy's own lock still guards writers
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)  # closing releases the flock


def any_of(queries: list[Any]) -> Any:
    import tantivy as T

    if not queries:
        return T.Query.empty_query()
    return queries[0] if len(queries) == 1 else T.Query.boolean_query([(T.Occur.Should, q) for q in queries])


def indexable(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata values a filter can find in the engine: scalars, strings up to 1,000 characters."""
    return {k: v for k, v in meta.items()
            if (isinstance(v, str) and len(v) <= _MAX_VALUE_CHARS) or isinstance(v, (bool, int))
            or (isinstance(v, float) and math.isfinite(v))}


def doc_string(chunk_id: str, metadata: Mapping[str, Any]) -> str:
    key = document_key(chunk_id, metadata)
    return key if isinstance(key, str) else json.dumps(key, default=str, separators=(",", ":"))


def order(meta: Mapping[str, Any]) -> int:
    """A chunk's place in its document's text as one integer: (start, chunk), -1 where missing."""
    def part(v: Any) -> int:
        return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2 ** 31 else -1

    return ((part(meta.get("start")) + 1) << 32) + part(meta.get("chunk")) + 1


def sort_key(m: Member) -> tuple[int, str]:
    return (m.order, m.id)


def first(p: Passage) -> int:
    return min(m.order for m in p.members) if p.members else -1


def partition(items: Sequence[Any], window: int) -> list[Sequence[Any]]:
    """Near-equal runs of at most ``window`` consecutive items (5 with window 4: 2 + 3)."""
    if not items:
        return []
    parts = -(-len(items) // window)
    bounds = [round(i * len(items) / parts) for i in range(parts + 1)]
    return [items[bounds[i]:bounds[i + 1]] for i in range(parts)]


def join_chunks(contents: Sequence[str], metadatas: Sequence[Mapping[str, Any]]) -> str:
    """One document's text again from its chunks (given in text order), overlaps taken once.

    Chunks carry the character offsets ``start`` of their text in the document; where they are
    missing, the chunks are joined as they are (an overlap then counts twice).
    """
    parts: list[str] = []
    end: int | None = None  # where the text joined so far ends, in document offsets
    for text, meta in zip(contents, metadatas, strict=True):
        start = meta.get("start")
        if not isinstance(start, int):
            parts.append(text)
            continue
        if end is not None and start < end:
            text = text[end - start:]  # drop the overlap with what is already there
            start = end
        if text:
            parts.append(text)
            end = start + len(text)
    return " ".join(parts)
