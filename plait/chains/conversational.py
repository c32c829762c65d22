"""Conversational RAG: history + new question -> standalone question -> retrieval -> cited answer.

A follow-up such as "and how fast is it?" means nothing to a retriever. The model first rewrites
it, given the conversation, into a question that stands on its own; that question is retrieved
and answered by a :class:`~plait.chains.rag.RAGChain`. With no history the question is used as
it is (no extra model call). When a :class:`~plait.chains.history.SQLiteChatHistory` is given,
the turn (the user's question and the answer with its markers) is stored under the session id,
so the conversation carries on after a restart; the history shown to the rewriter is trimmed to
``max_history_tokens``.

Input: ``{"question": ..., "session_id": ...}`` (history from the store) or
``{"question": ..., "history": [messages]}``. Output and stream: as :class:`RAGChain`, with the
rewritten question in ``RAGAnswer.question``.

Example::

    from plait.chains.conversational import ConversationalRAG
    from plait.chains.history import SQLiteChatHistory
    chain = ConversationalRAG(retriever, model, history=SQLiteChatHistory())
    chain.invoke({"question": "What is plait?", "session_id": "s1"})
    chain.invoke({"question": "How does it stream?", "session_id": "s1"})  # rewritten first
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from plait import tracing
from plait.chains.history import SQLiteChatHistory, approx_token_count, token_counter_for, trim_messages
from plait.chains.rag import RAGAnswer, RAGChain
from plait.messages import AssistantMessage, Message, SystemMessage, UserMessage, message_from
from plait.runnable import Runnable

REWRITE_PROMPT = (
    "Rewrite the last user question so that it can be understood without the conversation. "
    "Replace words like it, they, this and that with what they refer to. "
    "Reply with the rewritten question only."
)


class ConversationalRAG(Runnable[dict[str, Any], RAGAnswer]):
    """RAG over a conversation. See the module docstring.

    Args:
        retriever: a Runnable from a query string to Documents.
        model: the chat model used to rewrite the question and to answer.
        history: optional persistent store; used when the input has a ``session_id``.
        max_history_tokens: the history shown to the rewriter is trimmed to this many tokens.
        rag_options: passed to :class:`RAGChain` (``k``, ``score_threshold``, ...).
    """

    def __init__(self, retriever: Any, model: Runnable[Any, Any], *, history: SQLiteChatHistory | None = None,
                 max_history_tokens: int = 512, rewrite_prompt: str = REWRITE_PROMPT,
                 **rag_options: Any) -> None:
        self.rag = RAGChain(retriever, model, **rag_options)
        self.model = model
        self.history = history
        self.max_history_tokens = max_history_tokens
        self.rewrite_prompt = rewrite_prompt
        self.count_tokens = token_counter_for(model) if model is not None else approx_token_count

    def get_name(self) -> str:
        return self.name or "ConversationalRAG"

    def _history(self, input: dict[str, Any]) -> tuple[str | None, list[Message]]:
        if not isinstance(input, dict) or not isinstance(input.get("question"), str):
            raise TypeError("ConversationalRAG takes {'question': str, 'session_id': str} "
                            "or {'question': str, 'history': [messages]}")
        if "history" in input:
            return None, [message_from(m) for m in input["history"]]
        session = input.get("session_id")
        if session is None:
            return None, []
        if self.history is None:
            raise ValueError("A session_id was given but this ConversationalRAG has no history store: "
                             "pass history=SQLiteChatHistory()")
        return str(session), self.history.messages(str(session))

    def condense(self, question: str, history: Sequence[Message]) -> str:
        """The standalone question (the question itself when there is no history)."""
        turns = [m for m in history if m.role in ("user", "assistant")]
        if not turns:
            return question
        with tracing.start_run("rewrite_question", question) as run:
            kept = trim_messages(turns, self.max_history_tokens, self.count_tokens) if turns else []
            transcript = "\n".join(f"{m.role}: {m.content}" for m in kept)
            messages = [SystemMessage(content=self.rewrite_prompt),
                        UserMessage(content=f"Conversation:\n{transcript}\n\nLast user question: {question}\n"
                                            "Rewritten question:")]
            reply = self.model.invoke(messages)
            text = reply.content if isinstance(reply, Message) else str(reply)
            rewritten = text.strip().splitlines()[0].strip().strip('"') if text.strip() else ""
            run.output = rewritten or question
        return run.output

    def stream(self, input: dict[str, Any], **kwargs: Any) -> Iterator[RAGAnswer]:  # type: ignore[override]
        session, history = self._history(input)
        question = input["question"]
        standalone = self.condense(question, history)
        total: RAGAnswer | None = None
        for chunk in self.rag.stream(standalone, **kwargs):
            total = chunk if total is None else total + chunk
            yield chunk
        if session is not None and self.history is not None and total is not None:
            self.history.add(session, [UserMessage(content=question), AssistantMessage(content=total.answer)])

    def invoke(self, input: dict[str, Any], **kwargs: Any) -> RAGAnswer:
        total: RAGAnswer | None = None
        for chunk in self.stream(input, **kwargs):
            total = chunk if total is None else total + chunk
        assert total is not None
        return total
