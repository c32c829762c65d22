"""Hybrid retrieval: dense and BM25 results fused into one ranking (the default retriever).

Dense search finds paraphrases; BM25 finds rare exact terms (names, numbers, jargon). Fusing
them beats either alone on most collections, without tuning. Two fusions, selectable:

- ``fusion="convex"`` (default): each list's scores are normalised over its candidates, then
  ``score = weight * dense + (1 - weight) * bm25`` (a chunk missing from a list counts 0 there).
  Uses how much better the top hits are, not only their order. Normalisation
  ``"dbsf"`` (default; distribution-based score fusion, as in Qdrant) maps mean - 3 std .. mean +
  3 std of the list's scores to 0..1, so one outlier does not squash the rest; ``"minmax"`` maps
  the lowest..highest score to 0..1.
- ``fusion="rrf"``: reciprocal rank fusion, ``score = sum 1 / (rrf_k + rank)``; ignores score
  scales entirely.

Each side fetches ``max(k, fetch_k)`` candidates (default 100) before fusing.

Defaults (dbsf, weight 0.5, fetch_k 100) were chosen on principle, not tuned on a dataset.
Measured on SciFact (``benchmarks/retrieval_scifact.py``): with one chunk per abstract, dbsf
gives nDCG@10 0.735 (min-max 0.725, RRF 0.714), within 0.003 for fetch_k 50..200; with the
default token splitting (abstracts over 256 tokens become 2 chunks, 1.9 per abstract) dbsf gives
0.692 and RRF 0.714: when a document's dense and BM25 hits land on different chunks, convex
fusion cannot add them up. Prefer ``fusion="rrf"`` for collections of long, multi-chunk documents.

Example::

    retriever = store.as_retriever()            # HybridRetriever, convex fusion, k=4
    retriever = store.as_retriever(fusion="rrf", k=8)
    docs = retriever.invoke("effects of vitamin D on bone density")
"""

from __future__ import annotations

from collections.abc import Sequence

from plait.messages import Document
from plait.retrievers.base import Filter, Retriever

FUSIONS = ("convex", "rrf")


def _minmax(docs: Sequence[Document]) -> dict[str, float]:
    scores = [d.score or 0.0 for d in docs]
    if not scores:
        return {}
    lo, hi = min(scores), max(scores)
    span = hi - lo
    return {d.id or "": ((d.score or 0.0) - lo) / span if span > 0 else 1.0 for d in docs}


def _dbsf(docs: Sequence[Document]) -> dict[str, float]:
    scores = [d.score or 0.0 for d in docs]
    if not scores:
        return {}
    mean = sum(scores) / len(scores)
    std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    if std == 0:
        return {d.id or "": 1.0 for d in docs}
    lo, span = mean - 3 * std, 6 * std
    return {d.id or "": min(1.0, max(0.0, ((d.score or 0.0) - lo) / span)) for d in docs}


NORMALISATIONS = {"dbsf": _dbsf, "minmax": _minmax}


def fuse_convex(lists: Sequence[Sequence[Document]], weights: Sequence[float],
                normalisation: str = "dbsf") -> list[Document]:
    """Weighted sum of normalised scores (``"dbsf"`` or ``"minmax"``); best first."""
    norm = NORMALISATIONS[normalisation]
    fused: dict[str, float] = {}
    first: dict[str, Document] = {}
    for docs, w in zip(lists, weights, strict=True):
        for doc_id, s in norm(docs).items():
            fused[doc_id] = fused.get(doc_id, 0.0) + w * s
        for d in docs:
            first.setdefault(d.id or "", d)
    return _ranked(fused, first)


def fuse_rrf(lists: Sequence[Sequence[Document]], rrf_k: int = 60) -> list[Document]:
    """Reciprocal rank fusion; best first."""
    fused: dict[str, float] = {}
    first: dict[str, Document] = {}
    for docs in lists:
        for rank, d in enumerate(docs, start=1):
            fused[d.id or ""] = fused.get(d.id or "", 0.0) + 1.0 / (rrf_k + rank)
            first.setdefault(d.id or "", d)
    return _ranked(fused, first)


def _ranked(fused: dict[str, float], first: dict[str, Document]) -> list[Document]:
    order = sorted(fused, key=lambda i: (-fused[i], i))
    return [first[i].model_copy(update={"score": fused[i]}) for i in order]


class HybridRetriever(Retriever):
    """Dense + lexical retrieval with score fusion. See the module docstring.

    Args:
        dense, lexical: the two retrievers (any :class:`Retriever` works on either side).
        k, filter, score_threshold: as :class:`Retriever` (the threshold applies to fused scores).
        fusion: ``"convex"`` or ``"rrf"``.
        weight: the dense side's weight in convex fusion (BM25 gets ``1 - weight``).
        normalisation: ``"dbsf"`` or ``"minmax"`` (convex fusion).
        fetch_k: candidates fetched from each side (at least ``k``).
        rrf_k: the RRF constant.
    """

    def __init__(self, dense: Retriever, lexical: Retriever, *, k: int = 4, filter: Filter | None = None,
                 score_threshold: float | None = None, fusion: str = "convex", weight: float = 0.5,
                 normalisation: str = "dbsf", fetch_k: int = 100, rrf_k: int = 60) -> None:
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

    def __repr__(self) -> str:
        return f"HybridRetriever(k={self.k}, fusion={self.fusion!r})"

    def _retrieve(self, query: str, *, k: int, filter: Filter | None) -> list[Document]:
        n = max(k, self.fetch_k)
        dense = self.dense.invoke(query, k=n, filter=filter, score_threshold=None)
        lexical = self.lexical.invoke(query, k=n, filter=filter, score_threshold=None)
        if self.fusion == "rrf":
            fused = fuse_rrf([dense, lexical], self.rrf_k)
        else:
            fused = fuse_convex([dense, lexical], [self.weight, 1.0 - self.weight], self.normalisation)
        return fused[:k]
