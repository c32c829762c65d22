"""Multi-query retrieval: the model writes variants of the query; their results are fused by RRF.

One phrasing of a question can miss passages another phrasing finds. The model writes
``n_variants`` rewordings (one per line); the original query and every variant are retrieved
(as a batch), and the lists are merged by reciprocal rank fusion: a document's score is the sum
of ``1 / (rrf_k + rank)`` over the lists it appears in (rank from 1). Documents are told apart
by ``id``, else by source and span, else by content.

Input: a query string. Output: up to ``k`` Documents, best first, ``score`` set to the fused score.

Example::

    from plait.chains.multi_query import MultiQueryRetriever
    retriever = MultiQueryRetriever(base_retriever, model, n_variants=3, k=5)
    retriever.invoke("how do I stream a chain?")
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from plait import tracing
from plait.messages import Document, Message, SystemMessage, UserMessage
from plait.runnable import Runnable, coerce

VARIANTS_PROMPT = (
    "Write {n} different search queries that would find documents answering the user's question. "
    "Use different words. One query per line, no numbering, nothing else."
)

_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def doc_key(doc: Document) -> str:
    """What identifies a document across result lists."""
    if doc.id:
        return doc.id
    m = doc.metadata
    if m.get("source") is not None and m.get("start") is not None:
        return f"{m.get('source')}:{m.get('page')}:{m.get('start')}:{m.get('end')}"
    return doc.content


def reciprocal_rank_fusion(results: Sequence[Sequence[Document]], rrf_k: int = 60,
                           k: int | None = None) -> list[Document]:
    """Fuse ranked lists: score = sum of ``1 / (rrf_k + rank)``; ties keep first-seen order."""
    scores: dict[str, float] = {}
    first: dict[str, Document] = {}
    for docs in results:
        for rank, doc in enumerate(docs, 1):
            key = doc_key(doc)
            scores[key] = scores.get(key, 0.0) + 1.0 / (rrf_k + rank)
            first.setdefault(key, doc)
    order = sorted(scores, key=lambda key: -scores[key])  # stable: first-seen order breaks ties
    fused = [first[key].model_copy(update={"score": scores[key]}) for key in order]
    return fused[:k] if k is not None else fused


def parse_variants(text: str, n: int, original: str) -> list[str]:
    """The model's query lines, cleaned of numbering and quotes, without duplicates of the original."""
    out: list[str] = []
    for line in text.splitlines():
        q = _NUMBERING.sub("", line).strip().strip('"').strip()
        if q and q.lower() != original.lower() and q not in out:
            out.append(q)
    return out[:n]


class MultiQueryRetriever(Runnable[str, list[Document]]):
    """A retriever that asks the model for query variants and fuses the results. See module docstring.

    Args:
        retriever: the base retriever (query string -> Documents).
        model: the chat model that writes the variants.
        n_variants: how many variants to ask for (the original query is always searched too).
        k: how many fused documents to return.
        rrf_k: the RRF constant (60 is the usual choice).
    """

    def __init__(self, retriever: Any, model: Runnable[Any, Any], *, n_variants: int = 3, k: int = 5,
                 rrf_k: int = 60, prompt: str = VARIANTS_PROMPT) -> None:
        self.retriever = coerce(retriever)
        self.model = model
        self.n_variants, self.k, self.rrf_k, self.prompt = n_variants, k, rrf_k, prompt

    def get_name(self) -> str:
        return self.name or "MultiQueryRetriever"

    def _messages(self, query: str) -> list[Message]:
        return [SystemMessage(content=self.prompt.format(n=self.n_variants)), UserMessage(content=query)]

    def variants(self, query: str) -> list[str]:
        """The original query followed by the model's variants."""
        with tracing.start_run("query_variants", query) as run:
            reply = self.model.invoke(self._messages(query))
            text = reply.content if isinstance(reply, Message) else str(reply)
            run.output = [query, *parse_variants(text, self.n_variants, query)]
        return run.output

    async def avariants(self, query: str) -> list[str]:
        with tracing.start_run("query_variants", query) as run:
            reply = await self.model.ainvoke(self._messages(query))
            text = reply.content if isinstance(reply, Message) else str(reply)
            run.output = [query, *parse_variants(text, self.n_variants, query)]
        return run.output

    def invoke(self, input: str, **kwargs: Any) -> list[Document]:
        queries = self.variants(input)
        results = self.retriever.batch(queries)
        return reciprocal_rank_fusion(results, self.rrf_k, self.k)

    async def ainvoke(self, input: str, **kwargs: Any) -> list[Document]:
        queries = await self.avariants(input)
        results = await self.retriever.abatch(queries)
        return reciprocal_rank_fusion(results, self.rrf_k, self.k)
