"""Multi-query retrieval: the model writes variants of the query; their hits are fused by RRF.

One phrasing of a question can miss passages another phrasing finds. The model writes
``n_variants`` rewordings (one per line); the original query and every variant are retrieved
(concurrently), and the lists are merged by reciprocal rank fusion
(:mod:`plait.retrievers.fusion`): a chunk's score is the sum of ``1 / (rrf_k + rank)`` over the
lists it appears in (rank from 1). Chunks are told apart by id (a content hash for those without).

Input: a query string. Output: up to ``k`` Documents, best first, ``score`` set to the fused score.

Example::

    from plait.retrievers.multi_query import MultiQueryRetriever
    retriever = MultiQueryRetriever(base_retriever, model, n_variants=3, k=5)
    retriever.invoke("how do I stream a chain?")
"""

from __future__ import annotations

import re
from typing import Any

from plait.parsers import StrOutputParser
from plait.prompts import ChatPromptTemplate
from plait.retrievers.base import Filter, Hit, Retriever, to_retriever
from plait.retrievers.fusion import fuse_hits
from plait.runnable import Runnable

VARIANTS_PROMPT = (
    "Write {n} different search queries that would find documents answering the user's question. "
    "Use different words. One query per line, no numbering, nothing else."
)

_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def parse_variants(text: str, n: int, original: str) -> list[str]:
    """The model's query lines, cleaned of numbering and quotes, without duplicates of the original."""
    out: list[str] = []
    for line in text.splitlines():
        q = _NUMBERING.sub("", line).strip().strip('"').strip()
        if q and q.lower() != original.lower() and q not in out:
            out.append(q)
    return out[:n]


class MultiQueryRetriever(Retriever):
    """A retriever that asks the model for query variants and fuses the hits. See the module docstring.

    Args:
        retriever: the base retriever (a :class:`Retriever`, or any Runnable or function from a
            query to documents); each query fetches its own ``k``.
        model: the chat model that writes the variants.
        n_variants: how many variants to ask for (the original query is always searched too).
        k: how many fused documents to return.
        rrf_k: the RRF constant (60 is the usual choice).
        prompt: the instructions; ``{n}`` is the number of variants.
    """

    def __init__(self, retriever: Any, model: Runnable[Any, Any], *, n_variants: int = 3, k: int = 5,
                 filter: Filter | None = None, rrf_k: int = 60, prompt: str = VARIANTS_PROMPT) -> None:
        super().__init__(k=k, filter=filter)
        self.retriever = to_retriever(retriever)
        self.model = model
        self.n_variants, self.rrf_k, self.prompt = n_variants, rrf_k, prompt
        system = prompt.format(n=n_variants).replace("{", "{{").replace("}", "}}")
        #: query -> the model's lines (a chain, so tracing shows the model call)
        self.writer = ChatPromptTemplate.from_messages([("system", system), ("user", "{query}")]) | model | \
            StrOutputParser()
        self.writer.name = "query_variants"

    def warm_up(self) -> None:
        self.retriever.warm_up()
        self.model.warm_up()

    def variants(self, query: str) -> list[str]:
        """The original query followed by the model's variants."""
        return [query, *parse_variants(self.writer.invoke({"query": query}), self.n_variants, query)]

    def hits(self, query: str, *, k: int, filter: Filter | None = None) -> list[Hit]:
        # each query through invoke (its own k and threshold hold), concurrently; then RRF
        options: dict[str, Any] = {"filter": filter} if filter else {}
        found = self.retriever.batch(self.variants(query), **options)
        return fuse_hits([[Hit.of(d) for d in docs] for docs in found], k=k, fusion="rrf", rrf_k=self.rrf_k)
