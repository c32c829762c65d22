"""Hybrid retrieval: dense and BM25 results fused into one ranking (the default retriever).

Dense search finds paraphrases; BM25 finds rare exact terms (names, numbers, jargon). Fusing
them beats either alone on most collections, without tuning. Two fusions, selectable:

- ``fusion="convex"`` (default): each side's scores are normalised, then
  ``score = weight * dense + (1 - weight) * bm25`` (a hit missing from a side counts 0 there).
  Uses how much better the top hits are, not only their order. Normalisation ``"minmax"``
  (default) maps the side's lowest..highest candidate score to 0..1; ``"dbsf"``
  (distribution-based score fusion, as in Qdrant) maps mean - 3 std .. mean + 3 std to 0..1.
- ``fusion="rrf"``: reciprocal rank fusion, ``score = sum 1 / (rrf_k + rank)``; ignores score
  scales entirely.

Document-aware fusion (``by_document=True``, the default). A document split into several
chunks may have its dense hit on one chunk and its BM25 hit on another; chunk by chunk, neither
gets both sides' credit. Per document, each side's score for a document is its best chunk's score
(normalisation and ranks are taken over documents, so a document with many chunks does not weigh
more in them), and the document's best chunk carries the document's fused score; its other chunks
keep their own fused score, which is never higher, so they follow it. Chunks of one document are
those a splitter made from it: metadata with ``chunk``, equal apart from the per-chunk fields
(``chunk``, ``start``, ``end``, ``section``). Anything else is its own document, so on collections
of unsplit documents it is exactly chunk-level fusion.

Each side gives ``max(k, fetch_k)`` candidates (default 100) before fusing: documents when fusing
by document (it fetches twice as many chunks and cuts at the ``fetch_k``-th document, so both
sides are normalised over the same number of documents), else chunks. Candidates travel as ids,
scores and metadata; only the ``k`` kept are loaded as Documents.

Defaults (per-document min-max, weight 0.5, fetch_k 100) are chosen on principle and checked on
SciFact (``benchmarks/retrieval_scifact.py``; default splitting, 1.9 chunks per abstract, the
last two balanced), with BM25 over passages of whole documents (see :mod:`plait.retrievers.bm25`),
nDCG@10 at k=10: 0.736 per document, 0.733 chunk by chunk, RRF 0.716, DBSF 0.708 (dense alone
0.668, BM25 alone 0.676). Earlier, with greedy splitting (256 tokens, then the remainder):
0.729 per document (0.731 with exact instead of HNSW dense search), 0.724 chunk by chunk, RRF
0.705, DBSF 0.705. With BM25 over chunks, as before: min-max 0.725-0.727 whatever the depth
and level; DBSF 0.693-0.723, which moves with the list's depth (a deep list drags mean and std
down, the strongest hits pass mean + 3 std and are all clipped to 1, discarding the differences
convex fusion is for; min-max never clips its top); RRF 0.708-0.714. The weight is not tuned:
0.45 and 0.55 give 0.725 and 0.726 where 0.5 gives 0.731 (exact search, greedy splitting), so
differences under ~0.005 are noise on SciFact's 300 queries.

Example::

    retriever = store.as_retriever()            # HybridRetriever, convex fusion, k=4
    retriever = store.as_retriever(fusion="rrf", k=8)
    docs = retriever.invoke("effects of vitamin D on bone density")
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Protocol

from plait.messages import Document
from plait.retrievers.base import CHUNK_KEYS, Filter, Hit, Retriever, document_key

FUSIONS = ("convex", "rrf")
NORMALISATIONS = ("minmax", "dbsf")
__all__ = ["CHUNK_KEYS", "FUSIONS", "NORMALISATIONS", "HybridRetriever", "Scored", "document_key", "first_documents",
           "fuse", "fuse_convex", "fuse_rrf"]


class Scored(Protocol):
    """Anything fusion can take: a :class:`Hit` or a :class:`Document`."""

    @property
    def id(self) -> str | None: ...
    @property
    def score(self) -> float | None: ...
    @property
    def metadata(self) -> Mapping[str, Any]: ...


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
    """Fuse ranked lists (each best first) into ``(id, fused score)`` pairs, best first.

    Args:
        lists: one list per side, of :class:`Hit` or :class:`Document` (id, score, metadata).
        weights: per side, for convex fusion (default equal weights summing to 1).
        fusion, normalisation, rrf_k, by_document: see the module docstring.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}; got {fusion!r}")
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}; got {normalisation!r}")
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


def _documents(lists: Sequence[Sequence[Document]], ranked: list[tuple[str, float]]) -> list[Document]:
    first: dict[str, Document] = {}
    for docs in lists:
        for d in docs:
            first.setdefault(d.id or "", d)
    return [first[i].model_copy(update={"score": s}) for i, s in ranked]


def fuse_convex(lists: Sequence[Sequence[Document]], weights: Sequence[float],
                normalisation: str = "minmax", *, by_document: bool = False) -> list[Document]:
    """Weighted sum of normalised scores (``"minmax"`` or ``"dbsf"``), chunk by chunk unless ``by_document``."""
    return _documents(lists, fuse(lists, weights=weights, normalisation=normalisation, by_document=by_document))


def fuse_rrf(lists: Sequence[Sequence[Document]], rrf_k: int = 60, *, by_document: bool = False) -> list[Document]:
    """Reciprocal rank fusion, chunk by chunk unless ``by_document``; best first."""
    return _documents(lists, fuse(lists, fusion="rrf", rrf_k=rrf_k, by_document=by_document))


class HybridRetriever(Retriever):
    """Dense + lexical retrieval with score fusion. See the module docstring.

    Args:
        dense, lexical: the two retrievers (any :class:`Retriever` works on either side).
        k, filter, score_threshold: as :class:`Retriever` (the threshold applies to fused scores).
        fusion: ``"convex"`` or ``"rrf"``.
        weight: the dense side's weight in convex fusion (BM25 gets ``1 - weight``).
        normalisation: ``"minmax"`` or ``"dbsf"`` (convex fusion).
        fetch_k: candidates from each side (at least ``k``): documents when ``by_document``, else chunks.
        rrf_k: the RRF constant.
        by_document: fuse per document, then rank chunks (default; see the module docstring).
    """

    def __init__(self, dense: Retriever, lexical: Retriever, *, k: int = 4, filter: Filter | None = None,
                 score_threshold: float | None = None, fusion: str = "convex", weight: float = 0.5,
                 normalisation: str = "minmax", fetch_k: int = 100, rrf_k: int = 60,
                 by_document: bool = True) -> None:
        super().__init__(k=k, filter=filter, score_threshold=score_threshold)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}; got {fusion!r}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must be between 0 and 1; got {weight}")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}; got {normalisation!r}")
        self.normalisation = normalisation
        self.dense = dense
        self.lexical = lexical
        self.fusion = fusion
        self.weight = weight
        self.fetch_k = fetch_k
        self.rrf_k = rrf_k
        self.by_document = by_document

    def __repr__(self) -> str:
        return f"HybridRetriever(k={self.k}, fusion={self.fusion!r})"

    def _retrieve(self, query: str, *, k: int, filter: Filter | None) -> list[Document]:
        # 1. candidates from each side: ids, scores, metadata
        n = max(k, self.fetch_k)
        sides = (self.dense, self.lexical)
        if self.by_document:  # n documents from each side: twice as many chunks, cut at the n-th document
            hits = [first_documents(side._hits(query, k=2 * n, filter=filter), n) for side in sides]
        else:
            hits = [side._hits(query, k=n, filter=filter) for side in sides]
        # 2. fuse, keep the best k
        ranked = fuse(hits, weights=[self.weight, 1.0 - self.weight], fusion=self.fusion,
                      normalisation=self.normalisation, rrf_k=self.rrf_k, by_document=self.by_document)[:k]
        # 3. load the kept chunks that came without their text, from the side that found them
        found: dict[str, Document] = {}
        for side_hits in hits:
            for h in side_hits:
                if h.document is not None:
                    found.setdefault(h.id, h.document)
        missing = {i for i, _ in ranked} - found.keys()
        for side, side_hits in zip(sides, hits, strict=True):
            ids = [h.id for h in side_hits if h.id in missing]
            if ids:
                found.update((d.id or "", d) for d in side._load(ids))
                missing -= set(ids)
        return [found[i].model_copy(update={"score": s}) for i, s in ranked if i in found]
