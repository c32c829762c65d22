"""Citations for answers over retrieved passages: the numbered sources, the answer type, and how
an answer's ``[n]`` markers (written by the model, or inferred by word overlap) map to them.

Markers that name no passage (``[4]`` with three passages) are taken out of the answer as it
streams (:class:`MarkerFilter`) and listed in :attr:`RAGAnswer.dropped_markers`. When the model
cites nothing, :func:`infer_citations` picks the passage that shares most of the answer's content
words (ties: the higher-ranked), and :attr:`RAGAnswer.citation_note` says so in words.

:class:`Source` is one passage as it was shown to the model; its :meth:`Source.label` is how a
source is shown everywhere (``[3] docs/guide.md, page 2, chars 120-480``). :class:`RAGAnswer`
is what :class:`~plait.chains.rag.RAGChain` returns; streamed chunks of it add up with ``+``.

Example::

    from plait.chains.citations import cited_numbers, infer_citations
    cited_numbers("Chroma [2], pipes [1][7].", n_passages=3)     # [2, 1]
    infer_citations("Bananas are yellow.", docs)                  # [3]: the passage sharing most words
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
    citation_note: str = ""
    dropped_markers: list[int] = Field(default_factory=list)
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
            citation_note=other.citation_note or self.citation_note,
            dropped_markers=[*self.dropped_markers, *(n for n in other.dropped_markers
                                                      if n not in self.dropped_markers)],
            usage=self.usage + other.usage if self.usage else other.usage,
        )

    def format_sources(self) -> str:
        """The cited sources, one label per line (for printing after the answer)."""
        return "\n".join(s.label() for s in self.citations)


def format_passages(docs: Sequence[Document | Source], max_chars: int, question: str = "") -> str:
    """Number the passages ``[1] text`` as the model sees them, each cut to ``max_chars``.

    A longer passage is cut to the ``max_chars`` that hold most of the question's words (starting
    at a sentence), so the sentence that answers is shown even deep inside a long chunk.
    """
    blocks = []
    for i, doc in enumerate(docs, 1):
        text = " ".join(doc.content.split())
        if len(text) > max_chars:
            start = _best_window(text, max_chars, _words(question)) if question else 0
            cut = text[start:start + max_chars]
            if start + max_chars < len(text):
                cut = cut.rsplit(" ", 1)[0] + " ..."
            text = ("... " if start else "") + cut
        blocks.append(f"[{i}] {text}")
    return "\n\n".join(blocks)


def _best_window(text: str, width: int, words: set[str]) -> int:
    """The sentence start from which ``width`` characters hold most of ``words``; on a tie, the one
    whose first sentence holds most of them, then the earliest."""
    if not words:
        return 0
    starts = [0] + [m.end() for m in re.finditer(r"[.!?]\s+", text)]
    ends = starts[1:] + [len(text)]
    best, best_key = 0, (-1, -1)
    for start, end in zip(starts, ends, strict=True):
        key = (len(words & _words(text[start:start + width])), len(words & _words(text[start:end])))
        if key > best_key:
            best, best_key = start, key
    return best


def cited_numbers(text: str, n_passages: int) -> list[int]:
    """The passage numbers the text cites, in order of first appearance, within 1..n_passages."""
    seen: list[int] = []
    for group in _MARKER.findall(text):
        for part in group.split(","):
            n = int(part)
            if 1 <= n <= n_passages and n not in seen:
                seen.append(n)
    return seen


class MarkerFilter:
    """Takes ``[n]`` markers that name no passage out of streamed answer text, passing the rest at once.

    Text after a ``[`` is held back only while it can still become a marker (digits, commas,
    spaces); a group keeps its valid numbers (``[2, 7]`` -> ``[2]`` with 3 passages). Numbers
    removed are collected in ``dropped``.
    """

    def __init__(self, n_passages: int) -> None:
        self.n_passages = n_passages
        self.held = ""
        self.dropped: list[int] = []

    def feed(self, delta: str) -> str:
        out = []
        for ch in delta:
            if not self.held:
                if ch == "[":
                    self.held = ch
                else:
                    out.append(ch)
            elif ch == "]":
                out.append(self._resolve(self.held[1:]))
                self.held = ""
            elif (ch.isdigit() or ch in ", ") and len(self.held) < 24:
                self.held += ch
            else:  # not a marker after all
                out.append(self.held)
                self.held = ""
                out.append(self.feed(ch))
        return "".join(out)

    def _resolve(self, inside: str) -> str:
        parts = [p.strip() for p in inside.split(",")]
        if not all(p.isdigit() for p in parts):
            return f"[{inside}]"
        numbers = [int(p) for p in parts]
        keep = [n for n in numbers if 1 <= n <= self.n_passages]
        self.dropped += [n for n in numbers if n not in keep and n not in self.dropped]
        return f"[{', '.join(map(str, keep))}]" if keep else ""

    def flush(self) -> str:
        out, self.held = self.held, ""
        return out


def strip_invalid_markers(text: str, n_passages: int) -> tuple[str, list[int]]:
    """``text`` without the markers that name no passage, and the numbers removed."""
    markers = MarkerFilter(n_passages)
    return markers.feed(text) + markers.flush(), markers.dropped


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def support(answer: str, passage: str) -> tuple[int, int]:
    """(how many of the answer's content words occur in the passage, how many there are)."""
    words = _words(_MARKER.sub(" ", answer))
    return len(words & _words(passage)), len(words)


def infer_citations(answer: str, docs: Sequence[Document | Source], max_citations: int = 1,
                    min_overlap: float = 0.2) -> list[int]:
    """Passages (1-based) that best support an answer that has no markers.

    A passage's support is the share of the answer's content words it contains; those with at
    least ``min_overlap`` qualify, and the ``max_citations`` with the most support are returned
    (ties: the higher-ranked first). Measured on the first 20 SciFact claims
    (``benchmarks/rag_scifact.py``): see ``docs/chains.md``.
    """
    shares = []
    for i, doc in enumerate(docs, 1):
        shared, total = support(answer, doc.content)
        if total and shared / total >= min_overlap:
            shares.append((-shared, i))
    return [i for _, i in sorted(shares)[:max_citations]]


def inferred_note(answer: str, docs: Sequence[Document | Source], numbers: Sequence[int],
                  dropped: Sequence[int] = ()) -> str:
    """How inferred citations were chosen, in words (for printing beside the sources)."""
    why = (f"the model's only marker{'s' if len(dropped) > 1 else ''} {' '.join(f'[{n}]' for n in dropped)} "
           f"named no passage (there {'are' if len(docs) != 1 else 'is'} {len(docs)}; removed from the answer)"
           if dropped else "the model cited no passage")
    if not numbers:
        return f"{why}; no passage shares enough of the answer's words to cite one"
    best = numbers[0]
    shared, total = support(answer, docs[best - 1].content)
    runner = max((support(answer, d.content)[0], -i) for i, d in enumerate(docs, 1) if i != best) if len(docs) > 1 \
        else None
    than = "" if runner is None else (
        f", the most of the {len(docs)} passages" if runner[0] < shared else f", as many as [{-runner[1]}], which ranks lower")
    return f"{why}; plait added [{best}]: it shares {shared} of the answer's {total} content words{than}"


def says_dont_know(answer: str) -> bool:
    text = answer.strip().lower()
    return text.startswith(("i don't know", "i do not know", "i dont know")) or text in ("", "unknown")
