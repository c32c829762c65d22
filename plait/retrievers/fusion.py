"""Rank fusion: several ranked lists of hits in, one ranking out (hybrid and multi-query retrieval).

Two fusions:

- ``fusion="convex"``: each list's scores are normalised, then summed with weights
  (``score = weight * dense + (1 - weight) * bm25`` for hybrid; a hit missing from a list counts
  0 there). It uses how much better the top hits are, not only their order. Normalisation
  ``"minmax"`` maps a list's lowest..highest score to 0..1; ``"dbsf"`` (distribution-based score
  fusion, as in Qdrant) maps mean - 3 std .. mean + 3 std to 0..1.
- ``fusion="rrf"``: reciprocal rank fusion, ``score = sum 1 / (rrf_k + rank)`` (rank from 1);
  score scales are ignored.

Hits are told apart by chunk id (:func:`~plait.retrievers.base.document_id`). With
``by_document=True`` fusion is per document (:func:`~plait.retrievers.base.document_key`): a
list's score for a document is its best chunk's score (normalisation and ranks are taken over
documents, so a document with many chunks does not weigh more), the document's best chunk
carries the document's fused score, and its other chunks keep their own fused score, which is
never higher, so they follow it. On unsplit documents it is exactly chunk-level fusion.

Example::

    from plait.retrievers.fusion import fuse_documents
    fused = fuse_documents([dense_docs, bm25_docs], fusion="rrf")
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Protocol

from plait.messages import Document
from plait.retrievers.base import Hit, document_key

FUSIONS = ("convex", "rrf")
NORMALISATIONS = ("minmax", "dbsf")


class Scored(Protocol):
    """Anything fusion can rank: a :class:`Hit` or a :class:`Document` with an id."""

    @property
    def id(self) -> str | None: ...
    @property
    def score(self) -> float | None: ...
    @property
    def metadata(self) -> Mapping[str, Any]: ...


def check_options(fusion: str, normalisation: str = "minmax") -> None:
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}; got {fusion!r}")
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}; got {normalisation!r}")


def _scale(values: Sequence[float], normalisation: str) -> tuple[float, float]:
    """(low, span): a score s normalises to clip((s - low) / span, 0, 1)."""
    if normalisation == "minmax":
        lo = min(values)
        return lo, max(values) - lo
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return mean - 3 * std, 6 * std


def fuse(lists: Sequence[Sequence[Scored]], *, weights: Sequence[float] | None = None, fusion: str = "convex",
         normalisation: str = "minmax", rrf_k: int = 60, by_document: bool = False) -> list[tuple[str, float]]:
    """Fuse ranked lists (each best first) into ``(id, fused score)`` pairs, best first (ties: smaller id).

    Args:
        lists: one list per side, of :class:`Hit` or :class:`Document` (id, score, metadata).
        weights: per side, for convex fusion (default equal weights summing to 1).
        fusion, normalisation, rrf_k, by_document: see the module docstring.
    """
    check_options(fusion, normalisation)
    weights = list(weights) if weights is not None else [1.0 / max(1, len(lists))] * len(lists)
    key_of: dict[str, Hashable] = {}
    chunk: dict[str, float] = {}  # each chunk's own fused score
    doc: dict[Hashable, float] = {}  # each document's fused score
    for items, weight in zip(lists, weights, strict=True):
        # 1. this side's score for each document: its best chunk's
        best: dict[Hashable, float] = {}
        rank: dict[Hashable, int] = {}
        for pos, item in enumerate(items, start=1):
            cid = item.id or ""
            key = key_of.get(cid)
            if key is None:
                key = key_of[cid] = document_key(cid, item.metadata) if by_document else cid
            s = item.score or 0.0
            if key not in best or s > best[key]:
                best[key] = s
            rank.setdefault(key, len(rank) + 1)
            if fusion == "rrf":  # a chunk's rank among chunks (never better than its document's)
                chunk[cid] = chunk.get(cid, 0.0) + 1.0 / (rrf_k + pos)
        if not best:
            continue
        # 2. normalise over documents and add this side's part
        if fusion == "rrf":
            for key, r in rank.items():
                doc[key] = doc.get(key, 0.0) + 1.0 / (rrf_k + r)
            continue
        lo, span = _scale(list(best.values()), normalisation)

        def norm(s: float, lo: float = lo, span: float = span) -> float:
            return min(1.0, max(0.0, (s - lo) / span)) if span > 0 else 1.0

        for key, s in best.items():
            doc[key] = doc.get(key, 0.0) + weight * norm(s)
        if by_document:  # a chunk's own score: normalised over the side's chunks, so chunks of one
            # document keep their order even when it is the only document (no spread over documents)
            lo, span = _scale([item.score or 0.0 for item in items], normalisation)
        for item in items:
            cid = item.id or ""
            chunk[cid] = chunk.get(cid, 0.0) + weight * norm(item.score or 0.0, lo, span)
    # 3. each document's best chunk carries the document's score; its other chunks keep their own
    lead: dict[Hashable, str] = {}
    for cid, s in chunk.items():
        key = key_of[cid]
        other = lead.get(key)
        if other is None or (s, other) > (chunk[other], cid):  # ties: the smaller id leads
            lead[key] = cid
    fused = {cid: min(s, doc[key_of[cid]]) for cid, s in chunk.items()}  # never above its document
    for key, cid in lead.items():
        fused[cid] = doc[key]
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def fuse_hits(lists: Sequence[Sequence[Hit]], *, k: int | None = None, **options: Any) -> list[Hit]:
    """:func:`fuse` on hits, giving the best ``k`` hits with their fused scores (and their documents
    where any list had them)."""
    first: dict[str, Hit] = {}
    for hits in lists:
        for h in hits:
            seen = first.get(h.id)
            if seen is None or (seen.document is None and h.document is not None):
                first[h.id] = h
    ranked = fuse(lists, **options)
    return [first[i]._replace(score=s) for i, s in (ranked if k is None else ranked[:k])]


def fuse_documents(lists: Sequence[Sequence[Document]], *, k: int | None = None, **options: Any) -> list[Document]:
    """:func:`fuse` on lists of documents (told apart by id, else by content and metadata);
    the best ``k`` with ``score`` set to the fused score."""
    fused = fuse_hits([[Hit.of(d) for d in docs] for docs in lists], k=k, **options)
    return [h.document.model_copy(update={"score": h.score}) for h in fused if h.document is not None]


def first_documents(hits: Sequence[Hit], n: int) -> list[Hit]:
    """The hits (best first) up to the first chunk of the ``n+1``-th document."""
    seen: set[Hashable] = set()
    out = []
    for h in hits:
        key = document_key(h.id, h.metadata)
        if key not in seen:
            if len(seen) == n:
                break
            seen.add(key)
        out.append(h)
    return out
