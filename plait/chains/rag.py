"""Question answering over retrieved documents, with inline citations mapped back to sources.

The chain: retriever -> numbered context ``[1] ... [2] ...`` -> prompt -> chat model -> answer
whose ``[n]`` markers are resolved to the n-th passage's source (path, page, character span).

Contract:

- Input: a question string, or a dict with ``"question"`` (and optionally ``"history"``).
- Output: a :class:`RAGAnswer`: the answer text, the cited sources, every retrieved source.
- ``stream`` yields :class:`RAGAnswer` chunks that add up (``+``) to the result of ``invoke``:
  first one carrying the retrieved sources, then one per answer token, last one the citations.
- When nothing relevant is retrieved (no documents, or none scoring ``score_threshold`` or more)
  the model is not called and the answer says that the documents do not tell (``grounded=False``).
- Citations the model writes (``[1]``, ``[1, 2]``, ``[1][3]``) are used as they are; numbers that
  name no passage are dropped. Small models often write no markers at all: then, with
  ``fallback_citations=True`` (the default), the answer is matched against the passages by word
  overlap, the best-matching passages are cited and their markers appended to the answer, and
  ``citation_method`` says ``"inferred"`` so nobody mistakes them for the model's own.

Example::

    from plait.chains.rag import RAGChain
    from plait.fake import FakeChatModel
    from plait.messages import Document
    from plait.runnable import Lambda

    docs = [Document(content="plait composes steps with |.", metadata={"source": "README.md"})]
    chain = RAGChain(Lambda(lambda q: docs), FakeChatModel(["Steps compose with | [1]."]))
    result = chain.invoke("How do steps compose?")
    result.citations[0].source  # "README.md"
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from plait import tracing
from plait.messages import AssistantChunk, Document, Message, SystemMessage, Usage, UserMessage
from plait.runnable import Runnable, coerce

DONT_KNOW = "I don't know: the indexed documents do not contain an answer to this question."

SYSTEM_PROMPT = (
    "Answer the question in one or two sentences using only the passages. After each sentence, "
    "write the number of the passage it comes from in brackets, for example [2]. "
    "If the passages do not contain the answer, say: I don't know."
)

_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its of on or that the this "
    "to was what when where which who why will with you your not no yes".split()
)


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

    def label(self) -> str:
        """``path, page 3, chars 120-480`` (only the parts that are known)."""
        parts = [self.source or self.id or "unknown source"]
        if self.page is not None:
            parts.append(f"page {self.page}")
        if self.start is not None and self.end is not None:
            parts.append(f"chars {self.start}-{self.end}")
        return ", ".join(parts)


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
        """The cited sources, one ``[n] label`` per line (for printing after the answer)."""
        return "\n".join(f"[{s.number}] {s.label()}" for s in self.citations)


def format_passages(docs: Sequence[Document], max_chars: int) -> str:
    """Number the passages ``[1] (source) text`` as the model sees them, each cut to ``max_chars``."""
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


def infer_citations(answer: str, docs: Sequence[Document], max_citations: int = 1,
                    min_overlap: float = 0.2) -> list[int]:
    """Passages (1-based) the answer draws on, for answers with no markers.

    A passage qualifies when at least ``min_overlap`` of the answer's content words occur in it.
    The first ``max_citations`` qualifying passages *in retrieval order* are returned. On the first
    30 SciFact claims (``benchmarks/rag_scifact.py``) this gave citation recall 0.50 / precision
    0.56, against 0.47 / 0.52 when picking the passage with the largest overlap.
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


_BOUNDARY = re.compile(r"[.!?\n]")


def _norm(sentence: str) -> str:
    return " ".join(_WORD.findall(sentence.lower()))


class RepetitionGuard:
    """Stops a small model that starts repeating itself, without delaying new text.

    Tokens stream through at once, except while the sentence being written is still a prefix of
    a sentence already written: those tokens are held back. If the sentence turns out different,
    they are released; if it ends as a repeat, the guard says stop and the repeat is dropped.
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.current = ""
        self.held = ""

    def _could_repeat(self) -> bool:
        now = _norm(self.current)
        return bool(now) and any(s.startswith(now) for s in self.seen)

    def feed(self, delta: str) -> tuple[str, bool]:
        """Returns (text to emit now, whether to stop)."""
        emit = ""
        for piece in re.split(r"(?<=[.!?\n])", delta):
            if not piece:
                continue
            self.current += piece
            if _BOUNDARY.search(piece):
                sentence = _norm(self.current)
                if sentence and sentence in self.seen:
                    self.held, self.current = "", ""
                    return emit, True
                if sentence:
                    self.seen.add(sentence)
                emit += self.held + piece
                self.held, self.current = "", ""
            elif self._could_repeat():
                self.held += piece
            else:
                emit += self.held + piece
                self.held = ""
        return emit, False

    def flush(self) -> str:
        """Held-back text at the end of the stream (an unfinished sentence is kept)."""
        out, self.held = self.held, ""
        return out


class RAGChain(Runnable[Any, RAGAnswer]):
    """Retrieval-augmented question answering with citations. See the module docstring.

    Args:
        retriever: any Runnable (or function) from a query string to a list of Documents.
        model: a chat model (or any Runnable from messages to a message or text).
        k: how many of the retrieved passages to show the model (small models do best with few).
        score_threshold: passages scoring below this are treated as not relevant (``None``: keep all;
            scores are whatever the retriever reports, higher meaning more relevant).
        max_passage_chars: each passage is cut to this many characters in the prompt.
        system_prompt: the instructions; the passages and question follow in the user message.
        fallback_citations: cite the best-overlapping passages when the model writes no markers.
        model_options: options passed to every model call (e.g. ``max_tokens``, ``temperature``).
        stop_repeats: stop generating when the model starts repeating a sentence it already wrote
            (see :class:`RepetitionGuard`; tiny models loop under greedy decoding).
    """

    def __init__(self, retriever: Any, model: Runnable[Any, Any], *, k: int = 3,
                 score_threshold: float | None = None, max_passage_chars: int = 400,
                 system_prompt: str = SYSTEM_PROMPT, fallback_citations: bool = True,
                 dont_know: str = DONT_KNOW, model_options: dict[str, Any] | None = None,
                 stop_repeats: bool = True) -> None:
        self.retriever = coerce(retriever)
        self.model = model
        self.k = k
        self.score_threshold = score_threshold
        self.max_passage_chars = max_passage_chars
        self.system_prompt = system_prompt
        self.fallback_citations = fallback_citations
        self.dont_know = dont_know
        self.model_options = dict(model_options or {})
        self.stop_repeats = stop_repeats

    def get_name(self) -> str:
        return self.name or "RAGChain"

    # --- the steps, each small enough to reuse -----------------------------------------------
    @staticmethod
    def question_of(input: Any) -> str:
        if isinstance(input, str):
            return input
        if isinstance(input, dict) and isinstance(input.get("question"), str):
            return input["question"]
        raise TypeError(f"RAGChain takes a question string or a dict with 'question', got {type(input).__name__}")

    def retrieve(self, question: str) -> list[Document]:
        """Retrieve, drop passages under the score threshold, keep the best ``k``."""
        with tracing.start_run("retrieve", question) as run:
            docs = list(self.retriever.invoke(question))
            if self.score_threshold is not None:
                docs = [d for d in docs if d.score is not None and d.score >= self.score_threshold]
            run.output = docs = docs[: self.k]
        return docs

    def messages(self, question: str, docs: Sequence[Document]) -> list[Message]:
        passages = format_passages(docs, self.max_passage_chars)
        return [SystemMessage(content=self.system_prompt),
                UserMessage(content=f"Passages:\n{passages}\n\nQuestion: {question}\nAnswer:")]

    def finish(self, question: str, answer: str, docs: Sequence[Document]) -> RAGAnswer:
        """Resolve the answer's citations (see the module docstring); the returned answer text
        includes any inferred markers."""
        sources = [Source.from_document(i, d) for i, d in enumerate(docs, 1)]
        if says_dont_know(answer):
            return RAGAnswer(question=question, answer=answer, sources=sources, grounded=False)
        numbers = cited_numbers(answer, len(docs))
        method: Literal["model", "inferred", "none"] = "model" if numbers else "none"
        if not numbers and self.fallback_citations:
            numbers = infer_citations(answer, docs)
            if numbers:
                method = "inferred"
                answer = answer.rstrip() + " " + "".join(f"[{n}]" for n in numbers)
        return RAGAnswer(question=question, answer=answer, sources=sources,
                         citations=[sources[n - 1] for n in numbers], citation_method=method)

    # --- the Runnable side -------------------------------------------------------------------
    def invoke(self, input: Any, **kwargs: Any) -> RAGAnswer:
        total: RAGAnswer | None = None
        for chunk in self.stream(input, **kwargs):
            total = chunk if total is None else total + chunk
        assert total is not None
        return total

    def stream(self, input: Any, **kwargs: Any) -> Iterator[RAGAnswer]:  # type: ignore[override]
        question = self.question_of(input)
        docs = self.retrieve(question)
        if not docs:
            yield RAGAnswer(question=question, answer=self.dont_know, grounded=False)
            return
        sources = [Source.from_document(i, d) for i, d in enumerate(docs, 1)]
        yield RAGAnswer(question=question, sources=sources)
        text = ""
        options = {**self.model_options, **kwargs}
        guard = RepetitionGuard()
        stream = self.model.stream(self.messages(question, docs), **options)
        for piece in stream:
            delta = piece.content if isinstance(piece, (AssistantChunk, Message)) else str(piece)
            usage = getattr(piece, "usage", None)
            stop = False
            if delta and self.stop_repeats:
                delta, stop = guard.feed(delta)
            if delta or usage:
                text += delta
                yield RAGAnswer(answer=delta, usage=usage)
            if stop:
                await_close = getattr(stream, "close", None)
                if await_close is not None:
                    await_close()
                break
        tail = guard.flush()
        if tail:
            text += tail
            yield RAGAnswer(answer=tail)
        done = self.finish(question, text, docs)
        tail = done.answer[len(text):]  # inferred markers appended by finish()
        yield done.model_copy(update={"answer": tail, "question": ""})

    async def ainvoke(self, input: Any, **kwargs: Any) -> RAGAnswer:
        total: RAGAnswer | None = None
        async for chunk in self.astream(input, **kwargs):
            total = chunk if total is None else total + chunk
        assert total is not None
        return total

    async def astream(self, input: Any, **kwargs: Any) -> AsyncIterator[RAGAnswer]:  # type: ignore[override]
        question = self.question_of(input)
        with tracing.start_run("retrieve", question) as run:
            docs = list(await self.retriever.ainvoke(question))
            if self.score_threshold is not None:
                docs = [d for d in docs if d.score is not None and d.score >= self.score_threshold]
            run.output = docs = docs[: self.k]
        if not docs:
            yield RAGAnswer(question=question, answer=self.dont_know, grounded=False)
            return
        sources = [Source.from_document(i, d) for i, d in enumerate(docs, 1)]
        yield RAGAnswer(question=question, sources=sources)
        text = ""
        options = {**self.model_options, **kwargs}
        guard = RepetitionGuard()
        stream = self.model.astream(self.messages(question, docs), **options)
        async for piece in stream:
            delta = piece.content if isinstance(piece, (AssistantChunk, Message)) else str(piece)
            usage = getattr(piece, "usage", None)
            stop = False
            if delta and self.stop_repeats:
                delta, stop = guard.feed(delta)
            if delta or usage:
                text += delta
                yield RAGAnswer(answer=delta, usage=usage)
            if stop:
                await_close = getattr(stream, "aclose", None)
                if await_close is not None:
                    await await_close()
                break
        tail = guard.flush()
        if tail:
            text += tail
            yield RAGAnswer(answer=tail)
        done = self.finish(question, text, docs)
        yield done.model_copy(update={"answer": done.answer[len(text):], "question": ""})


class RelevanceGate(Runnable[str, list[Document]]):
    """A retriever that returns nothing unless a second retriever finds something scoring ``min_score``.

    Fused scores (hybrid retrieval) are relative: the best hit of any query scores high, so they
    cannot tell "nothing relevant". A dense retriever's cosine similarity is absolute, so it makes
    a good gate: ``RelevanceGate(hybrid, gate=dense, min_score=0.3)`` retrieves with ``hybrid``
    only when the best dense hit has similarity 0.3 or more.
    """

    def __init__(self, retriever: Any, gate: Any, min_score: float) -> None:
        self.retriever = coerce(retriever)
        self.gate = coerce(gate)
        self.min_score = min_score

    def get_name(self) -> str:
        return self.name or "RelevanceGate"

    def best_score(self, query: str) -> float | None:
        scores = [d.score for d in self.gate.invoke(query) if d.score is not None]
        return max(scores) if scores else None

    def invoke(self, input: str, **kwargs: Any) -> list[Document]:
        best = self.best_score(input)
        if best is None or best < self.min_score:
            return []
        return list(self.retriever.invoke(input, **kwargs))
