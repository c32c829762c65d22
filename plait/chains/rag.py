"""Question answering over retrieved documents, with inline citations mapped back to sources.

The chain is composed of steps (``RAGChain.chain``), so ``invoke``, ``stream`` and ``astream``
run one definition and tracing shows each step::

    retrieve  -> {"question", "history", "docs"}          the retriever, score threshold, best k
    sources   -> + "sources", "passages"                  numbered [1] [2] ... as the model sees them
    generate  -> + "answer": prompt | model | RepetitionGuard  (no passages: the "don't know" text)
    answer    -> RAGAnswer chunks                         sources, answer tokens, then citations

Contract:

- Input: a question string, or a dict with ``"question"`` and optionally ``"history"`` (earlier
  messages, shown to the model between the instructions and the passages; retrieval uses the
  question alone; :class:`~plait.chains.conversational.ConversationalRAG` rewrites follow-ups).
- Output: a :class:`RAGAnswer`: the answer text, the cited sources, every retrieved source.
- ``stream`` yields :class:`RAGAnswer` chunks that add up (``+``) to the result of ``invoke``:
  first one carrying the retrieved sources, then one per answer token, last one the citations.
- When nothing relevant is retrieved (no documents, or none scoring ``score_threshold`` or more)
  the model is not called and the answer says that the documents do not tell (``grounded=False``).
- Citations the model writes (``[1]``, ``[1, 2]``, ``[1][3]``) are used as they are; markers that
  name no passage (``[4]`` with 3 passages) are taken out of the answer as it streams and listed
  in ``dropped_markers``. Small models often write no valid marker at all: then, with
  ``fallback_citations=True`` (the default), the answer is matched against the passages by word
  overlap (:func:`~plait.chains.citations.infer_citations`): the passage sharing most of the
  answer's content words (ties: the higher-ranked) is cited, its marker is appended to the
  answer, ``citation_method`` says ``"inferred"`` so nobody mistakes it for the model's own, and
  ``citation_note`` says how it was chosen.
- ``model_options`` are checked when the chain is made (a chat model's ``Options`` refuse unknown
  ones) and passed to every model call; options given to a call are added to them.

Example::

    from plait.chains.rag import RAGChain
    from plait.fake import FakeChatModel
    from plait.messages import Document
    from plait.runnable import Lambda

    docs = [Document(content="plait composes steps with |.", metadata={"source": "README.md"})]
    chain = RAGChain(Lambda(lambda q: docs), FakeChatModel(["Steps compose with | [1]."]))
    result = chain.invoke("How do steps compose?")
    result.citations[0].label()  # "[1] README.md"
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel

from plait.chains.citations import (
    MarkerFilter,
    RAGAnswer,
    Source,
    cited_numbers,
    format_passages,
    infer_citations,
    inferred_note,
    says_dont_know,
)
from plait.chat_model import ChatModel
from plait.messages import SystemMessage, message_from
from plait.parsers import text_of
from plait.prompts import ChatPromptTemplate, MessagesPlaceholder
from plait.retrievers.relevance import RelevanceGate as RelevanceGate  # moved to plait.retrievers
from plait.runnable import Assign, Branch, Lambda, Runnable, coerce

DONT_KNOW = "I don't know: no indexed passage seems to answer this question."

SYSTEM_PROMPT = (
    "Answer the question in one or two sentences using only the passages. After each sentence, "
    "write the number of the passage it comes from in brackets, for example [2]. "
    "If the passages do not contain the answer, say: I don't know."
)
USER_PROMPT = "Passages:\n{passages}\n\nQuestion: {question}\nAnswer:"

_BOUNDARY = re.compile(r"[.!?\n]")
_CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_WORD = re.compile(r"[a-z0-9]+")


def _norm(sentence: str) -> str:
    return " ".join(_WORD.findall(sentence.lower()))


class Repeats:
    """The state of :class:`RepetitionGuard` over one stream: the sentences written so far."""

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
                # citation numbers aside ('# [4].' repeats '# [3].'); a sentence without words by its text
                bare = _CITATION.sub("", self.current)
                sentence = _norm(bare) or bare.strip()
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


def _with_text(piece: Any, text: str) -> Any:
    """``piece`` with its text replaced (a message chunk keeps its usage and finish reason)."""
    return piece.model_copy(update={"content": text}) if isinstance(piece, BaseModel) else text


class RepetitionGuard(Runnable[Any, Any]):
    """A stream transform that stops a small model repeating itself, without delaying new text.

    Chunks (strings or message chunks) pass through at once, except while the sentence being
    written is still a prefix of a sentence already written: that text is held back. If the
    sentence turns out different, it is released; if it ends as a repeat, the stream stops there
    (the model's stream is closed, so a local model stops decoding) and the repeat is dropped.
    Tiny models loop under greedy decoding; see :class:`Repeats` for the state it keeps.
    """

    io_bound = False

    def _step(self, repeats: Repeats, piece: Any) -> tuple[Any, bool]:
        text, stop = repeats.feed(text_of(piece))
        keep = text or not isinstance(piece, str)  # a message chunk may carry usage or a finish reason
        return (_with_text(piece, text) if keep else None), stop

    def invoke(self, input: Any, **options: Any) -> Any:
        repeats = Repeats()
        text, _ = repeats.feed(text_of(input))
        return _with_text(input, text + repeats.flush())

    def transform(self, inputs: Iterator[Any], **options: Any) -> Iterator[Any]:
        repeats, last = Repeats(), None
        for piece in inputs:
            last = piece
            out, stop = self._step(repeats, piece)
            if out is not None:
                yield out
            if stop:
                getattr(inputs, "close", lambda: None)()  # a generator: the model stops now
                return
        tail = repeats.flush()
        if tail:
            yield tail if isinstance(last, str) or last is None else type(last)(content=tail)

    async def atransform(self, inputs: AsyncIterator[Any], **options: Any) -> AsyncIterator[Any]:
        repeats, last = Repeats(), None
        async for piece in inputs:
            last = piece
            out, stop = self._step(repeats, piece)
            if out is not None:
                yield out
            if stop:
                aclose = getattr(inputs, "aclose", None)
                if aclose is not None:
                    await aclose()
                return
        tail = repeats.flush()
        if tail:
            yield tail if isinstance(last, str) or last is None else type(last)(content=tail)


def _has_passages(state: dict[str, Any]) -> bool:
    return bool(state["sources"])


class RAGChain(Runnable[Any, RAGAnswer]):
    """Retrieval-augmented question answering with citations. See the module docstring.

    Args:
        retriever: any Runnable (or function) from a query string to a list of Documents.
        model: a chat model (or any Runnable from messages to a message or text).
        k: how many of the retrieved passages to show the model (small models do best with few).
        score_threshold: passages scoring below this are treated as not relevant (``None``: keep all;
            scores are whatever the retriever reports, higher meaning more relevant).
        max_passage_chars: each passage is cut to this many characters in the prompt (a longer one to
            the part holding most of the question's words, see :func:`~plait.chains.citations.format_passages`).
        system_prompt: the instructions; the history, then the passages and question, follow.
        fallback_citations: cite an overlapping passage when the model writes no markers.
        dont_know: the answer when no passage is relevant.
        model_options: options passed to every model call (e.g. ``max_tokens``, ``temperature``).
        stop_repeats: stop generating when the model starts repeating a sentence it already wrote
            (see :class:`RepetitionGuard`).
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
        self.model_options = self._checked(dict(model_options or {}))
        self.stop_repeats = stop_repeats
        self.prompt = ChatPromptTemplate.from_messages([
            SystemMessage(content=system_prompt), MessagesPlaceholder("history", optional=True), ("user", USER_PROMPT)])
        self.chain = self._compose(self.model_options)

    def get_name(self) -> str:
        return self.name or "RAGChain"

    def warm_up(self) -> None:
        """Load the retriever's and the model's lazy state (embedding model, store, weights) now."""
        self.retriever.warm_up()
        self.model.warm_up()

    def _checked(self, options: dict[str, Any]) -> dict[str, Any]:
        if options and isinstance(self.model, ChatModel):
            self.model.validate_options(options)  # raises on an unknown option, naming the known ones
        return options

    def _compose(self, options: dict[str, Any]) -> Runnable[Any, RAGAnswer]:
        """The steps (see the module docstring), with the model bound to ``options``."""
        model = self.model.bind(**options) if options else self.model
        llm = self.prompt | model | RepetitionGuard() if self.stop_repeats else self.prompt | model
        llm.name = "llm"
        generate = Assign(answer=Branch((_has_passages, llm), default=Lambda(self._dont_know, name="dont_know")))
        generate.name = "generate"
        chain = (Lambda(self.retrieve, name="retrieve") | Lambda(self.number_sources, name="sources")
                 | generate | Lambda(self.assemble, name="answer"))
        chain.name = self.get_name()
        return chain

    def _chain(self, options: dict[str, Any]) -> Runnable[Any, RAGAnswer]:
        return self._compose({**self.model_options, **self._checked(options)}) if options else self.chain

    # --- the steps ---------------------------------------------------------------------------
    @staticmethod
    def question_of(input: Any) -> str:
        if isinstance(input, str):
            return input
        if isinstance(input, dict) and isinstance(input.get("question"), str):
            return input["question"]
        raise TypeError(f"RAGChain takes a question string or a dict with 'question', got {type(input).__name__}")

    def retrieve(self, input: Any) -> dict[str, Any]:
        """Retrieve for the question, drop passages under the score threshold, keep the best ``k``."""
        question = self.question_of(input)
        history = input.get("history") if isinstance(input, dict) else None
        if history is not None and not isinstance(history, list):
            raise TypeError(f"RAGChain's 'history' is a list of messages, got {type(history).__name__}")
        docs = list(self.retriever.invoke(question))
        if self.score_threshold is not None:
            docs = [d for d in docs if d.score is not None and d.score >= self.score_threshold]
        state = {"question": question, "docs": docs[: self.k]}
        if history:
            state["history"] = [message_from(m) for m in history]
        return state

    def number_sources(self, state: dict[str, Any]) -> dict[str, Any]:
        """The passages numbered as the model sees them, and as :class:`Source` for the answer."""
        sources = [Source.from_document(i, d) for i, d in enumerate(state["docs"], 1)]
        return {**state, "sources": sources, "passages": format_passages(sources, self.max_passage_chars,
                                                                         state["question"])}

    def _dont_know(self, state: dict[str, Any]) -> str:
        return self.dont_know

    def assemble(self, chunks: Iterator[dict[str, Any]]) -> Iterator[RAGAnswer]:
        """The answer as it streams: the sources first, then the answer text, then the citations."""
        state: dict[str, Any] | None = None
        markers = MarkerFilter(0)
        text = ""
        for chunk in chunks:
            if state is None:  # the first chunk holds the state (generate passes its input on first)
                state = chunk
                markers = MarkerFilter(len(chunk["sources"]))
                yield RAGAnswer(question=chunk["question"], sources=chunk["sources"], grounded=bool(chunk["sources"]))
            if "answer" in chunk:
                piece = chunk["answer"]
                delta, usage = markers.feed(text_of(piece)), getattr(piece, "usage", None)
                if delta or usage:
                    text += delta
                    yield RAGAnswer(answer=delta, usage=usage)
        tail = markers.flush()
        if tail:
            text += tail
            yield RAGAnswer(answer=tail)
        if state is not None and state["sources"]:
            done = self.finish(state["question"], text, state["sources"], dropped=markers.dropped)
            yield done.model_copy(update={"answer": done.answer[len(text):], "question": ""})  # inferred markers

    def finish(self, question: str, answer: str, sources: Sequence[Source],
               dropped: Sequence[int] = ()) -> RAGAnswer:
        """Resolve the answer's citations (see the module docstring); the returned answer text
        includes any inferred markers. ``dropped``: marker numbers already taken out of ``answer``."""
        sources, dropped = list(sources), list(dropped)
        if says_dont_know(answer):
            return RAGAnswer(question=question, answer=answer, sources=sources, grounded=False,
                             dropped_markers=dropped)
        numbers = cited_numbers(answer, len(sources))
        method: Literal["model", "inferred", "none"] = "model" if numbers else "none"
        note = ""
        if not numbers and self.fallback_citations:
            numbers = infer_citations(answer, sources)
            note = inferred_note(answer, sources, numbers, dropped)
            if numbers:
                method = "inferred"
                answer += ("" if answer.endswith(" ") else " ") + "".join(f"[{n}]" for n in numbers)
        return RAGAnswer(question=question, answer=answer, sources=sources, citations=[sources[n - 1] for n in numbers],
                         citation_method=method, citation_note=note, dropped_markers=dropped)

    # --- the Runnable side: all through the one composed chain ------------------------------
    def stream(self, input: Any, **options: Any) -> Iterator[RAGAnswer]:  # type: ignore[override]
        yield from self._chain(options).stream(input)

    async def astream(self, input: Any, **options: Any) -> AsyncIterator[RAGAnswer]:  # type: ignore[override]
        async for chunk in self._chain(options).astream(input):
            yield chunk

    def invoke(self, input: Any, **options: Any) -> RAGAnswer:
        return _total(self.stream(input, **options))

    async def ainvoke(self, input: Any, **options: Any) -> RAGAnswer:
        total: RAGAnswer | None = None
        async for chunk in self.astream(input, **options):
            total = chunk if total is None else total + chunk
        assert total is not None
        return total


def _total(chunks: Iterator[RAGAnswer]) -> RAGAnswer:
    total: RAGAnswer | None = None
    for chunk in chunks:
        total = chunk if total is None else total + chunk
    assert total is not None
    return total
