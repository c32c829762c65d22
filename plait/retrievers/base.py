"""The retriever contract, the document keys fusion uses, and the metadata-filter language.

Contract: a retriever is a ``Runnable[str, list[Document]]`` that implements one method,

- ``hits(query, *, k, filter) -> list[Hit]``: the best ``k`` candidates, best first, each a
  :class:`Hit` (chunk id, score where higher is better, the chunk metadata the store holds:
  ``source``, ``page``, ``chunk``, ``start``, ``end`` for ingested files), with no score
  threshold applied. A hit carries its :class:`Document` when the backend had it at hand; else
- ``load(ids) -> list[Document]`` fetches the documents of hits returned without one (in the
  order given, missing ids left out). Only backends that return such hits implement it.

The base class turns hits into documents (``invoke``), handles per-call overrides
(``retriever.invoke(q, k=10, filter={...})``) and the score threshold. Retrievers that combine
others (hybrid fusion, multi-query, the relevance gate) call their parts' ``hits`` and ``load``,
so only the chunks they keep are ever loaded. :func:`to_retriever` makes any Runnable or function
from a query to documents a Retriever.

Two keys tell hits apart: a chunk's id (:func:`document_id` gives stored chunks without one a
stable content hash), and :func:`document_key`, which groups the chunks a splitter made from one
document.

Filters use Chroma's ``where`` language, so one filter works on every backend::

    {"source": "notes.md"}                                  # equality
    {"page": {"$gte": 2}}                                   # $eq $ne $gt $gte $lt $lte
    {"source": {"$in": ["a.md", "b.md"]}}                   # $in $nin
    {"$and": [{"source": "a.md"}, {"page": {"$lt": 3}}]}    # $and $or, nested freely

A dict with several keys means all of them (it is turned into ``$and`` for Chroma).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from plait.messages import Document
from plait.runnable import Runnable, coerce

Filter = Mapping[str, Any]

_COMPARE = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a is not None and a > b,
    "$gte": lambda a, b: a is not None and a >= b,
    "$lt": lambda a, b: a is not None and a < b,
    "$lte": lambda a, b: a is not None and a <= b,
    "$in": lambda a, b: a in b,
    "$nin": lambda a, b: a not in b,
}


def check_filter(where: Filter) -> None:
    """Raise ValueError with the offending part if ``where`` is not a valid filter."""
    if not isinstance(where, Mapping) or not where:
        raise ValueError(f"A filter is a non-empty dict like {{'source': 'a.md'}}; got {where!r}")
    for key, value in where.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise ValueError(f"{key} takes a non-empty list of filters; got {value!r}")
            for sub in value:
                check_filter(sub)
        elif key.startswith("$"):
            raise ValueError(f"Unknown filter operator {key!r} at the top level: use $and / $or, or a field name")
        elif isinstance(value, Mapping):
            if len(value) != 1:
                raise ValueError(f"Field {key!r}: give exactly one operator, e.g. {{'$gte': 2}}; got {value!r}")
            op, arg = next(iter(value.items()))
            if op not in _COMPARE:
                raise ValueError(f"Field {key!r}: unknown operator {op!r}; use one of {', '.join(_COMPARE)}")
            if op in ("$in", "$nin") and not isinstance(arg, (list, tuple)):
                raise ValueError(f"Field {key!r}: {op} takes a list; got {arg!r}")


def matches(metadata: Mapping[str, Any], where: Filter | None) -> bool:
    """Whether ``metadata`` passes the filter ``where`` (None passes everything)."""
    if not where:
        return True
    for key, value in where.items():
        if key == "$and":
            if not all(matches(metadata, sub) for sub in value):
                return False
        elif key == "$or":
            if not any(matches(metadata, sub) for sub in value):
                return False
        elif isinstance(value, Mapping):
            op, arg = next(iter(value.items()))
            present = key in metadata
            if not present and op not in ("$ne", "$nin"):
                return False
            try:
                if not _COMPARE[op](metadata.get(key), arg):
                    return False
            except TypeError:  # comparing a string with a number: no match, like Chroma
                return False
        elif metadata.get(key, _MISSING) != value:
            return False
    return True


_MISSING = object()


def to_chroma_where(where: Filter | None) -> dict[str, Any] | None:
    """The filter in the form Chroma takes (several top-level fields become an explicit ``$and``)."""
    if not where:
        return None
    check_filter(where)

    def convert(w: Mapping[str, Any]) -> dict[str, Any]:
        parts = []
        for key, value in w.items():
            if key in ("$and", "$or"):
                subs = [convert(s) for s in value]
                parts.append(subs[0] if len(subs) == 1 else {key: subs})
            else:
                parts.append({key: dict(value) if isinstance(value, Mapping) else value})
        return parts[0] if len(parts) == 1 else {"$and": parts}

    return convert(where)


#: Metadata a splitter sets per chunk; the rest identifies the chunk's document.
CHUNK_KEYS = frozenset({"chunk", "start", "end", "section"})


def document_key(chunk_id: str, metadata: Mapping[str, Any]) -> Hashable:
    """Which document a chunk belongs to (chunks a splitter made from one document share it)."""
    if "chunk" not in metadata:
        return ("id", chunk_id)
    key = tuple(sorted((k, v) for k, v in metadata.items() if k not in CHUNK_KEYS))
    try:
        hash(key)
    except TypeError:  # unhashable values (lists, dicts): compare them as JSON
        return json.dumps(dict(key), sort_keys=True, default=str)
    return key


def document_id(doc: Document) -> str:
    """The chunk's id, else a stable hash of its content and metadata (the id a store gives it)."""
    if doc.id:
        return doc.id
    payload = json.dumps([doc.content, doc.metadata], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


class Hit(NamedTuple):
    """A scored candidate: the chunk's id, score and metadata, and the whole document when the
    backend had it at hand (else ``None``: the retriever's :meth:`Retriever.load` fetches it)."""

    id: str
    score: float
    metadata: Mapping[str, Any]
    document: Document | None = None

    @classmethod
    def of(cls, doc: Document, score: float | None = None) -> Hit:
        """A document as a hit (its id, or :func:`document_id` when it has none)."""
        s = score if score is not None else doc.score
        return cls(document_id(doc), s if s is not None else 0.0, doc.metadata, doc)


class Retriever(Runnable[str, list[Document]]):
    """Base class of retrievers: query string in, best ``k`` documents out (scores set).

    Subclasses implement :meth:`hits` (and :meth:`load` if their hits may come without
    documents); see the module docstring.

    Args:
        k: how many documents to return.
        filter: a metadata filter (see the module docstring) applied to every query.
        score_threshold: drop documents scoring below this (the score's scale is the retriever's:
            cosine similarity for dense, BM25 score for lexical, fused score for hybrid).
    """

    io_bound = True

    def __init__(self, *, k: int = 4, filter: Filter | None = None, score_threshold: float | None = None) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if filter:
            check_filter(filter)
        self.k = k
        self.filter = dict(filter) if filter else None
        self.score_threshold = score_threshold

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k})"

    def hits(self, query: str, *, k: int, filter: Filter | None = None) -> list[Hit]:
        """The best ``k`` candidates for ``query``, best first, no threshold applied."""
        raise NotImplementedError(f"{type(self).__name__} must implement hits()")

    def load(self, ids: Sequence[str]) -> list[Document]:
        """The documents of hits that came without one, in the order given (missing ids left out)."""
        raise NotImplementedError(f"{type(self).__name__} returned hits without documents but has no load()")

    def documents(self, hits: Sequence[Hit]) -> list[Document]:
        """The hits as Documents scored with the hit's score, in order (loading those that came
        without one; a chunk deleted since the search is left out)."""
        missing = [h.id for h in hits if h.document is None]
        loaded = {d.id: d for d in self.load(missing)} if missing else {}
        docs = []
        for h in hits:
            doc = h.document if h.document is not None else loaded.get(h.id)
            if doc is not None:
                docs.append(doc if doc.score == h.score else doc.model_copy(update={"score": h.score}))
        return docs

    def invoke(self, input: str, **kwargs: Any) -> list[Document]:
        """Retrieve for ``input``. Options: ``k``, ``filter`` (replaces the retriever's), ``score_threshold``."""
        unknown = set(kwargs) - {"k", "filter", "score_threshold"}
        if unknown:
            raise TypeError(f"Unknown retriever option(s) {sorted(unknown)}; use k, filter or score_threshold")
        if not isinstance(input, str):
            raise TypeError(f"A retriever takes a query string, not a {type(input).__name__}")
        k = int(kwargs.get("k", self.k))
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        where = kwargs.get("filter", self.filter)
        if where:
            check_filter(where)
        threshold = kwargs.get("score_threshold", self.score_threshold)
        hits = self.hits(input, k=k, filter=where or None)[:k]
        if threshold is not None:
            hits = [h for h in hits if h.score >= threshold]
        return self.documents(hits)


class KeywordIndex(Protocol):
    """What a store needs from its lexical (keyword) side, kept in step with its vectors: writes,
    ``hits`` (as :meth:`Retriever.hits`), and reads by chunk id (``metadata`` from memory, for fusion).

    :class:`plait.retrievers.lexical.LexicalIndex` implements it (the store's default);
    :class:`~plait.retrievers.bm25.BM25Retriever` searches any of them.
    """

    def upsert(self, ids: Sequence[str], texts: Sequence[str],
               metadatas: Sequence[Mapping[str, Any] | None] | None = None) -> None: ...
    def delete(self, ids: Sequence[str]) -> None: ...
    def clear(self) -> None: ...
    def count(self) -> int: ...
    def hits(self, query: str, k: int = 4, filter: Filter | None = None) -> list[Hit]: ...
    def get(self, ids: Sequence[str]) -> list[Document]: ...
    def metadata(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...


def to_retriever(thing: Any) -> Retriever:
    """A Retriever as it is; any other Runnable or function from a query to documents wrapped as one
    (it returns what the function returns: ``k`` cuts the list, ``filter`` drops what does not match)."""
    if isinstance(thing, Retriever):
        return thing
    return _Wrapped(coerce(thing))


class _Wrapped(Retriever):
    def __init__(self, runnable: Runnable[str, Any]) -> None:
        super().__init__(k=sys.maxsize)
        self.runnable = runnable

    def __repr__(self) -> str:
        return f"to_retriever({self.runnable.get_name()})"

    def warm_up(self) -> None:
        self.runnable.warm_up()

    def hits(self, query: str, *, k: int, filter: Filter | None = None) -> list[Hit]:
        docs = [d for d in self.runnable.invoke(query) if matches(d.metadata, filter)]
        return [Hit.of(d) for d in docs[:k]]
