"""A retriever that answers only when a second retriever finds something close enough.

Fused scores (hybrid retrieval) are relative: the best hit of any query scores high, so they
cannot tell "nothing relevant". A dense retriever's cosine similarity is absolute, so it makes a
good gate: ``RelevanceGate(hybrid, gate=dense, min_score=0.3)`` retrieves with ``hybrid`` only
when the best dense hit has similarity 0.3 or more, and returns nothing otherwise (a RAG chain
then says it does not know instead of answering from unrelated passages).

Example::

    from plait.retrievers.relevance import RelevanceGate
    gated = RelevanceGate(store.as_retriever(k=3), store.as_retriever("dense", k=1), min_score=0.3)
    gated.invoke("How long should I boil an egg?")    # [] on a collection about software
"""

from __future__ import annotations

from typing import Any

from plait.retrievers.base import Filter, Hit, Retriever, to_retriever


class RelevanceGate(Retriever):
    """``retriever``'s hits when ``gate``'s best hit scores at least ``min_score``, else none.

    Args:
        retriever: what retrieves (a :class:`Retriever`, or any Runnable or function from a query
            to documents); the gate's ``k`` defaults to its ``k``.
        gate: the retriever whose best score decides (the filter of a query applies to it too).
        min_score: the least best score that lets the query through.
    """

    def __init__(self, retriever: Any, gate: Any, min_score: float, *, k: int | None = None,
                 filter: Filter | None = None) -> None:
        self.retriever = to_retriever(retriever)
        self.gate = to_retriever(gate)
        super().__init__(k=k or self.retriever.k, filter=filter)
        self.min_score = min_score

    def __repr__(self) -> str:
        return f"RelevanceGate({self.retriever!r}, gate={self.gate!r}, min_score={self.min_score})"

    def warm_up(self) -> None:
        self.retriever.warm_up()
        self.gate.warm_up()

    def best_score(self, query: str, filter: Filter | None = None) -> float | None:
        """The gate's best score for ``query`` (``None`` when it finds nothing)."""
        docs = self.gate.invoke(query, **({"filter": filter} if filter else {}))
        return max((d.score for d in docs if d.score is not None), default=None)

    def hits(self, query: str, *, k: int, filter: Filter | None = None) -> list[Hit]:
        best = self.best_score(query, filter)
        if best is None or best < self.min_score:
            return []
        # through invoke, so the retriever's own filter and threshold hold
        return [Hit.of(d) for d in self.retriever.invoke(query, k=k, **({"filter": filter} if filter else {}))]
