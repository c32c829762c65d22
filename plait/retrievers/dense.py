"""Dense (vector) retrieval over a :class:`plait.retrievers.chroma.ChromaStore`.

``search="similarity"`` returns the nearest chunks by cosine similarity (``Document.score``);
``search="mmr"`` trades some relevance for diversity (maximal marginal relevance).

Example::

    retriever = DenseRetriever(store, k=5, filter={"source": "handbook.pdf"})
    docs = retriever.invoke("How many vacation days do I get?")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

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

    def _retrieve(self, query: str, *, k: int, filter: Filter | None) -> list[Document]:
        if self.search == "mmr":
            return self.store.mmr_search(query, k, fetch_k=self.fetch_k, lambda_mult=self.lambda_mult,
                                         filter=filter)
        return self.store.similarity_search(query, k, filter=filter)

    def _hits(self, query: str, *, k: int, filter: Filter | None) -> list[Hit]:
        if self.search == "mmr":
            return super()._hits(query, k=k, filter=filter)
        return self.store.similarity_hits(query, k, filter=filter)

    def _load(self, ids: Sequence[str]) -> list[Document]:
        return self.store.documents(ids)
