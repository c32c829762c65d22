"""Citations for answers over retrieved passages: the numbered sources, the answer type, and how
an answer's ``[n]`` markers (written by the model, or inferred by word overlap) map to them.

:class:`Source` is one passage as it was shown to the model; its :meth:`Source.label` is how a
source is shown everywhere (``[3] docs/guide.md, page 2, chars 120-480``). :class:`RAGAnswer`
is what :class:`~plait.chains.rag.RAGChain` returns; streamed chunks of it add up with ``+``.

Example::

    from plait.chains.citations import cited_numbers, infer_citations
    cited_numbers("Chroma [2], pipes [1][7].", n_passages=3)     # [2, 1]
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from plait.messages import Document, Usage

_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its of on or that the this "
    "to was what when where which who why will with you your not no yes".split()
)


def short_path(path: str) -> str:
    """A path relative to the current folder when it is inside it, else as it is."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel.startswith("..") else rel


class Source(BaseModel):
    """One retrieved passage, numbered as it was shown to the model."""

    number: int
    source: str | None = None
    page: int | None = None
    chunk: int | None = None
    start: int | None = None
    end: int | None = None
    score: float | None = None
    id: str | None = None
    content: str = ""

    @classmethod
    def from_document(cls, number: int, doc: Document) -> Source:
        m = doc.metadata
        return cls(number=number, source=m.get("source"), page=_int(m.get("page")), chunk=_int(m.get("chunk")),
                   start=_int(m.get("start")), end=_int(m.get("end")), score=doc.score, id=doc.id,
                   content=doc.content)

    def label(self, *, relative: bool = False) -> str:
        """``[3] path, page 3, chars 120-480`` (only the parts that are known): how a source is
        shown everywhere. ``relative``: the path relative to the current folder when inside it."""
        where = self.source or self.id or "unknown source"
        parts = [short_path(where) if relative and self.source else where]
        if self.page is not None:
            parts.append(f"page {self.page}")
        if self.start is not None and self.end is not None:
            parts.append(f"chars {self.start}-{self.end}")
        return f"[{self.number}] " + ", ".join(parts)


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


class RAGAnswer(BaseModel):
    """The answer with its citations. Streamed chunks of it add up with ``+``."""

    question: str = ""
    answer: str = ""
    citations: list[Source] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    grounded: bool = True
    citation_method: Literal["model", "inferred", "none"] = "none"
    usage: Usage | None = None

    def __add__(self, other: RAGAnswer) -> RAGAnswer:
        if not isinstance(other, RAGAnswer):
            return NotImplemented
        return RAGAnswer(
            question=self.question or other.question,
            answer=self.answer + other.answer,
            citations=other.citations or self.citations,
            sources=other.sources or self.sources,
            grounded=self.grounded and other.grounded,
            citation_method=other.citation_method if other.citation_method != "none" else self.citation_method,
            usage=self.usage + other.usage if self.usage else other.usage,
        )

    def format_sources(self) -> str:
        """The cited sources, one label per line (for printing after the answer)."""
        return "\n".join(s.label() for s in self.citations)


def format_passages(docs: Sequence[Document | Source], max_chars: int) -> str:
    """Number the passages ``[1] text`` as the model sees them, each cut to ``max_chars``."""
    blocks = []
    for i, doc in enumerate(docs, 1):
        text = " ".join(doc.content.split())
        if len(text) > max_chars:
            text = text[:max_chars].rsplit(" ", 1)[0] + " ..."
        blocks.append(f"[{i}] {text}")
    return "\n\n".join(blocks)


def cited_numbers(text: str, n_passages: int) -> list[int]:
    """The passage numbers the text cites, in order of first appearance, within 1..n_passages."""
    seen: list[int] = []
    for group in _MARKER.findall(text):
        for part in group.split(","):
            n = int(part)
            if 1 <= n <= n_passages and n not in seen:
                seen.append(n)
    return seen


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def infer_citations(answer: str, docs: Sequence[Document | Source], max_citations: int = 1,
                    min_overlap: float = 0.2) -> list[int]:
    """Passages (1-based) the answer draws on, for answers with no markers.

    A passage qualifies when at least ``min_overlap`` of the answer's content words occur in it.
    The first ``max_citations`` qualifying passages *in retrieval order* are returned, not those
    with the largest overlap: on the first 30 SciFact claims (``benchmarks/rag_scifact.py``) this
    gave citation recall 0.50 / precision 0.56, against 0.47 / 0.52 for the largest overlap (the
    retriever's order is the better judge of which passage answers; overlap only says which one
    the answer's words came from).
    """
    words = _words(_MARKER.sub(" ", answer))
    if not words:
        return []
    picked = []
    for i, doc in enumerate(docs, 1):
        if len(words & _words(doc.content)) / len(words) >= min_overlap:
            picked.append(i)
    return picked[:max_citations]


def says_dont_know(answer: str) -> bool:
    text = answer.strip().lower()
    return text.startswith(("i don't know", "i do not know", "i dont know")) or text in ("", "unknown")
