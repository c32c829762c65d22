"""Hybrid retrieval: dense and lexical (BM25) hits fused into one ranking (the default retriever).

Dense search finds paraphrases; BM25 finds rare exact terms (names, numbers, jargon). Fusing
them beats either alone on most collections, without tuning. The fusions (convex with min-max or
DBSF normalisation, and RRF) and per-document fusion are those of :mod:`plait.retrievers.fusion`.

How a query runs: each side gives ``n = max(k, fetch_k)`` candidates (default 100) as ids, scores
and metadata (:meth:`Retriever.hits`). When fusing by document, each side gives its hits up to
its ``n``-th document, so both sides are normalised over the same number of documents: a side
asks for as many hits as it gives per document (``n`` from a BM25 retriever, whose hits are
passages of whole documents, about one per document; ``2 * n`` chunks from any other side), and
asks again for twice as many only when those came short of ``n`` documents. (Asking the BM25 side
for ``2 * n`` passages, as before, doubled its top-k work for the same documents: 40 ms of a
hybrid query at 300,000 chunks on a loaded machine.) The lists are fused, and only the ``k``
kept are loaded as Documents, each from the side that found it. The defaults (per-document min-max fusion, weight 0.5, fetch_k 100) and the
measurements behind them are in ``docs/retrieval.md``.

Example::

    retriever = store.as_retriever()            # HybridRetriever, convex fusion, k=4
    retriever = store.as_retriever(fusion="rrf", k=8)
    docs = retriever.invoke("effects of vitamin D on bone density")
"""

from __future__ import annotations

from plait.messages import Document
from plait.retrievers.base import Filter, Hit, Retriever, document_key
from plait.retrievers.bm25 import BM25Retriever
from plait.retrievers.fusion import check_options, first_documents, fuse_hits


class HybridRetriever(Retriever):
    """Dense + lexical retrieval with score fusion. See the module docstring.

    Args:
        dense, lexical: the two retrievers (any :class:`Retriever` works on either side).
        k, filter, score_threshold: as :class:`Retriever` (the threshold applies to fused scores).
        fusion: ``"convex"`` or ``"rrf"``.
        weight: the dense side's weight in convex fusion (the lexical side gets ``1 - weight``).
        normalisation: ``"minmax"`` or ``"dbsf"`` (convex fusion).
        fetch_k: candidates from each side (at least ``k``): documents when ``by_document``, else chunks.
        rrf_k: the RRF constant.
        by_document: fuse per document, then rank chunks (default).
    """

    def __init__(self, dense: Retriever, lexical: Retriever, *, k: int = 4, filter: Filter | None = None,
                 score_threshold: float | None = None, fusion: str = "convex", weight: float = 0.5,
                 normalisation: str = "minmax", fetch_k: int = 100, rrf_k: int = 60,
                 by_document: bool = True) -> None:
        super().__init__(k=k, filter=filter, score_threshold=score_threshold)
        check_options(fusion, normalisation)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must be between 0 and 1; got {weight}")
        self.dense = dense
        self.lexical = lexical
        self.fusion = fusion
        self.weight = weight
        self.normalisation = normalisation
        self.fetch_k = fetch_k
        self.rrf_k = rrf_k
        self.by_document = by_document

    def __repr__(self) -> str:
        return f"HybridRetriever(k={self.k}, fusion={self.fusion!r})"

    def warm_up(self) -> None:
        self.dense.warm_up()
        self.lexical.warm_up()

    def hits(self, query: str, *, k: int, filter: Filter | None = None) -> list[Hit]:
        # 1. candidates from each side: ids, scores, metadata
        n = max(k, self.fetch_k)
        sides = (self.dense, self.lexical)
        if self.by_document:  # each side's hits up to its n-th document
            lists = [_documents(side, query, n, filter) for side in sides]
        else:
            lists = [side.hits(query, k=n, filter=filter) for side in sides]
        # 2. fuse, keep the best k
        fused = fuse_hits(lists, k=k, weights=[self.weight, 1.0 - self.weight], fusion=self.fusion,
                          normalisation=self.normalisation, rrf_k=self.rrf_k, by_document=self.by_document)
        # 3. load the kept chunks that came without their text, from the side that found them
        missing = {h.id for h in fused if h.document is None}
        loaded: dict[str | None, Document] = {}
        for side, side_hits in zip(sides, lists, strict=True):
            ids = [h.id for h in side_hits if h.id in missing]
            if ids:
                loaded.update((d.id, d) for d in side.load(ids))
                missing -= set(ids)
        return [h if h.document is not None else h._replace(document=loaded.get(h.id)) for h in fused
                if h.document is not None or h.id in loaded]


def _documents(side: Retriever, query: str, n: int, filter: Filter | None) -> list[Hit]:
    """``side``'s hits up to its ``n``-th document (fewer when it has fewer)."""
    asked = n if isinstance(side, BM25Retriever) else 2 * n  # passages: about one hit per document
    while True:
        got = side.hits(query, k=asked, filter=filter)
        cut = first_documents(got, n)
        if len(got) < asked or len({document_key(h.id, h.metadata) for h in cut}) >= n:
            return cut
        asked *= 2
