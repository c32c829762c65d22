"""A retriever that answers only when there is evidence that the collection holds an answer.

Fused scores (hybrid retrieval) are relative: the best hit of any query scores high, so they
cannot tell "nothing relevant". Two kinds of evidence are absolute, and either one opens the gate:

- **dense**: the best cosine similarity of a dense retriever (``gate``) is at least ``min_score``.
  Good at paraphrases; weak when the answer is one sentence inside a long chunk about other
  things ("The magic password is swordfish." among 1,500 characters of other text: 0.23).
- **lexical**: one of the best lexical (BM25) hits contains *every* content word of the question
  (question and function words such as "what", "is", "the" aside; plural "s" ignored). BM25
  scores themselves are relative, so the gate checks coverage of the question's words instead.

``RelevanceGate(hybrid, gate=dense, min_score=0.3)`` takes the lexical side from ``hybrid``
when it is a :class:`~plait.retrievers.hybrid.HybridRetriever`; pass ``lexical=`` to choose one,
or ``lexical=False`` to gate on the dense score alone. When neither passes, it returns nothing
(a RAG chain then says it does not know instead of answering from unrelated passages), and
:meth:`RelevanceGate.why_closed` says why in words.

Example::

    from plait.retrievers.relevance import RelevanceGate
    gated = RelevanceGate(store.as_retriever(k=3), store.as_retriever("dense", k=1), min_score=0.3)
    gated.invoke("How long should I boil an egg?")    # [] on a collection about software
    gated.invoke("What is the magic password?")       # the passage that names it
"""

from __future__ import annotations

import re
from typing import Any

from plait.retrievers.base import Filter, Hit, Retriever, to_retriever

_WORD = re.compile(r"\w+")
# words that say what kind of question it is, not what it is about
_QUESTION_WORDS = frozenset(
    "a an and are as at be been but by can could did do does for from had has have how i if in into is it "
    "its me my no not of on or our should so such that the their them then there these they this those to "
    "us was we were what when where which while who whom whose why will with would you your tell explain "
    "describe please about".split()
)


def content_words(text: str) -> set[str]:
    """The words of ``text`` that carry meaning: lower-cased, question and function words dropped,
    a plural "s" cut (``passwords`` -> ``password``)."""
    words = set()
    for w in _WORD.findall(text.lower()):
        if w in _QUESTION_WORDS or (len(w) < 2 and not w.isdigit()):
            continue
        words.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return words


def covers(passage: str, question: str) -> bool:
    """Whether ``passage`` contains every content word of ``question`` (and it has one)."""
    wanted = content_words(question)
    return bool(wanted) and wanted <= content_words(passage)


class RelevanceGate(Retriever):
    """``retriever``'s hits when the dense or the lexical evidence says the answer is there, else none.

    Args:
        retriever: what retrieves (a :class:`Retriever`, or any Runnable or function from a query
            to documents); the gate's ``k`` defaults to its ``k``.
        gate: the dense retriever whose best score decides (the filter of a query applies to it too).
        min_score: the least best dense score that lets the query through.
        lexical: a lexical retriever whose best ``lexical_k`` hits are checked for the question's
            words; ``None``: ``retriever``'s lexical side when it has one; ``False``: dense only.
        lexical_k: how many lexical hits are checked.
    """

    def __init__(self, retriever: Any, gate: Any, min_score: float, *, k: int | None = None,
                 filter: Filter | None = None, lexical: Any = None, lexical_k: int = 3) -> None:
        self.retriever = to_retriever(retriever)
        self.gate = to_retriever(gate)
        super().__init__(k=k or self.retriever.k, filter=filter)
        self.min_score = min_score
        if lexical is None:
            lexical = getattr(self.retriever, "lexical", None)
            lexical = lexical if isinstance(lexical, Retriever) else None
        self.lexical = to_retriever(lexical) if lexical else None
        self.lexical_k = lexical_k

    def __repr__(self) -> str:
        return f"RelevanceGate({self.retriever!r}, gate={self.gate!r}, min_score={self.min_score})"

    def warm_up(self) -> None:
        self.retriever.warm_up()
        self.gate.warm_up()
        if self.lexical is not None:
            self.lexical.warm_up()

    @staticmethod
    def _filter(filter: Filter | None) -> dict[str, Any]:
        return {"filter": filter} if filter else {}

    def best_score(self, query: str, filter: Filter | None = None) -> float | None:
        """The dense gate's best score for ``query`` (``None`` when it finds nothing)."""
        docs = self.gate.invoke(query, **self._filter(filter))
        return max((d.score for d in docs if d.score is not None), default=None)

    def lexical_match(self, query: str, filter: Filter | None = None) -> bool:
        """Whether one of the best lexical hits contains every content word of ``query``."""
        if self.lexical is None or not content_words(query):
            return False
        docs = self.lexical.invoke(query, k=self.lexical_k, **self._filter(filter))
        return any(covers(d.content, query) for d in docs)

    def is_open(self, query: str, filter: Filter | None = None) -> bool:
        best = self.best_score(query, filter)
        return (best is not None and best >= self.min_score) or self.lexical_match(query, filter)

    def why_closed(self, query: str, filter: Filter | None = None) -> str:
        """Why ``query`` gets no passages, in words (empty when the gate lets it through)."""
        if self.is_open(query, filter):
            return ""
        best = self.best_score(query, filter)
        dense = ("no passage was found" if best is None else
                 f"the closest passage has similarity {best:.2f}, under {self.min_score:g}")
        words = ", ".join(sorted(content_words(query))) or "none"
        lexical = "" if self.lexical is None else f", and no passage holds every word of the question ({words})"
        return dense + lexical

    def hits(self, query: str, *, k: int, filter: Filter | None = None) -> list[Hit]:
        if not self.is_open(query, filter):
            return []
        # through invoke, so the retriever's own filter and threshold hold
        return [Hit.of(d) for d in self.retriever.invoke(query, k=k, **self._filter(filter))]
