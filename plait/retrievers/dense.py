"""Dense (vector) retrieval over a :class:`plait.retrievers.chroma.ChromaStore`.

``search="similarity"`` returns the nearest chunks by cosine similarity (``Document.score``);
``search="mmr"`` trades some relevance for diversity (maximal marginal relevance): it fetches the
``fetch_k`` nearest chunks with their vectors, then picks greedily the one maximising
``lambda_mult * sim(query, d) - (1 - lambda_mult) * max sim(d, already picked)``.

Example::

    retriever = DenseRetriever(store, k=5, filter={"source": "handbook.pdf"})
    docs = retriever.invoke("How many vacation days do I get?")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from plait.messages import Document
from plait.retrievers.base import Filter, Hit, Retriever

if TYPE_CHECKING:
    from plait.retrievers.chroma import ChromaStore


class DenseRetriever(Retriever):
    """Vector search. Args as :class:`Retriever`, plus ``search`` (``"similarity"`` or ``"mmr"``),
    ``fetch_k`` and ``lambda_mult`` for MMR."""

    def __init__(self, store: ChromaStore, *, k: int = 4, filter: Filter | None = None,
                 score_threshold: float | None = None, search: str = "similarity", fetch_k: int = 20,
                 lambda_mult: float = 0.5) -> None:
        super().__init__(k=k, filter=filter, score_threshold=score_threshold)
        if search not in ("similarity", "mmr"):
            raise ValueError(f"search must be 'similarity' or 'mmr'; got {search!r}")
        self.store = store
        self.search = search
        self.fetch_k = fetch_k
        self.lambda_mult = lambda_mult

    def warm_up(self) -> None:
        self.store.warm_up()

    def hits(self, query: str, *, k: int, filter: Filter | None = None) -> list[Hit]:
        if self.search == "mmr":
            return self._mmr(query, k, filter)
        return self.store.similarity_hits(query, k, filter=filter)

    def load(self, ids: Sequence[str]) -> list[Document]:
        return self.store.documents(ids)

    def _mmr(self, query: str, k: int, filter: Filter | None) -> list[Hit]:
        import numpy as np

        qv = np.asarray(self.store.embeddings.embed_query(query), dtype=np.float32)
        cands, vectors = self.store.search_with_vectors(qv, max(k, self.fetch_k), filter=filter)
        picked = mmr(qv, vectors, k, self.lambda_mult) if cands else []
        return [Hit.of(cands[i]) for i in picked]


def mmr(query: Any, vectors: Any, k: int, lambda_mult: float = 0.5) -> list[int]:
    """Positions of the ``k`` vectors maximal marginal relevance picks, in the order picked."""
    import numpy as np

    vecs = np.asarray(vectors, dtype=np.float32)
    vecs = vecs / (np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-12)
    to_query = vecs @ (query / (np.linalg.norm(query) + 1e-12))
    picked: list[int] = []
    while len(picked) < min(k, len(vecs)):
        redundancy = (vecs @ vecs[picked].T).max(axis=1) if picked else np.zeros(len(vecs))
        value = lambda_mult * to_query - (1 - lambda_mult) * redundancy
        value[picked] = -np.inf
        picked.append(int(np.argmax(value)))
    return picked
