"""The BM25 retriever over a store's lexical side.

:class:`BM25Retriever` searches any :class:`~plait.retrievers.base.KeywordIndex`; a
:class:`~plait.retrievers.chroma.ChromaStore`'s is a :class:`~plait.retrievers.lexical.LexicalIndex`
(tantivy, passages of whole documents, updated in O(changed)). The bm25s index it replaced is the
baseline of ``benchmarks/lexical_engines.py`` (``benchmarks/_bm25s_baseline.py``).

Example::

    from plait.retrievers.bm25 import BM25Retriever
    from plait.retrievers.lexical import LexicalIndex
    index = LexicalIndex()                                # in memory; pass a directory to persist
    index.upsert(["1", "2"], ["Cats purr when happy.", "Dogs bark at strangers."])
    BM25Retriever(index, k=1).invoke("why do cats purr")[0].content
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from plait.messages import Document
from plait.retrievers.base import Filter, Hit, KeywordIndex, Retriever


class BM25Retriever(Retriever):
    """Lexical retriever over a :class:`~plait.retrievers.base.KeywordIndex` (scores are BM25 scores).

    Args:
        index: the index, or a function giving it on first use (a store passes
            ``store.lexical_index``, so making the retriever opens nothing).
        k, filter, score_threshold: as :class:`Retriever`.

    Example::

        retriever = store.as_retriever("bm25", k=5)
        retriever.invoke("vitamin D bone density")
    """

    def __init__(self, index: KeywordIndex | Callable[[], KeywordIndex], *, k: int = 4,
                 filter: Filter | None = None, score_threshold: float | None = None) -> None:
        super().__init__(k=k, filter=filter, score_threshold=score_threshold)
        self._index = index

    @property
    def index(self) -> KeywordIndex:
        return self._index() if callable(self._index) else self._index

    def warm_up(self) -> None:
        self.index.hits("warm up", 1)  # opens the index and builds what its first search would

    def hits(self, query: str, *, k: int, filter: Filter | None = None) -> list[Hit]:
        return self.index.hits(query, k, filter)

    def load(self, ids: Sequence[str]) -> list[Document]:
        return self.index.get(ids)
