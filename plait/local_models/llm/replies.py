"""From a constrained decode's text to chunks and a message: content, or tool calls as deltas.

The grammar of :mod:`plait.local_models.llm.constrained` holds tool calls to the form
``{"tool": NAME, "arguments": {...}}`` (or a list of those, joined by ``", "``), so a reply can be
read while it is written: :class:`ReplyStream` sends each call's name once and its arguments as
they grow. Log-probabilities (when asked for) ride on content chunks with the text they belong to;
a reply that is tool calls has none (as in OpenAI's API, ``logprobs`` cover ``content`` only).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from plait.messages import AssistantChunk, AssistantMessage, TokenLogprob, ToolCallChunk
from plait.tools import Tool

_CALL_HEAD = re.compile(r'\{"tool": "([A-Za-z0-9_\-]+)", "arguments": ')


class ReplyStream:
    """Turns decoded text into chunks: content, or tool calls whose arguments stream as deltas.

    With tools on, a reply that starts like a call (``[`` or ``{"tool": "``) is tool calls, which
    the grammar holds to the calls' form, so they can be read while they are written; text that
    could still become a call is held back until it is clear.
    """

    _HEAD = '{"tool": "'

    def __init__(self, tools: list[Tool] | None) -> None:
        self.tools = tools
        self.text = ""
        self.calls: bool | None = None if tools else False  # unknown until the reply's start shows
        self._sent: list[int] = []  # per call: characters of its arguments already sent
        self.logprobs: list[TokenLogprob] | None = None  # of text held back, when asked for

    def feed(self, piece: str, logprobs: list[TokenLogprob] | None = None) -> list[AssistantChunk]:
        """Chunks for the next piece of text (``logprobs``: its tokens', when asked for)."""
        if logprobs is not None:
            self.logprobs = (self.logprobs or []) + logprobs
        if not piece and not logprobs:
            return []
        self.text += piece
        if self.calls is None:
            if self.text.startswith(("[", self._HEAD)):
                self.calls = True
            elif self._HEAD.startswith(self.text):
                return []
            else:  # text (or a JSON answer that is not a call): everything held back goes out now
                self.calls = False
                return [AssistantChunk(content=self.text, logprobs=self._held_logprobs())]
        if not self.calls:
            return [AssistantChunk(content=piece, logprobs=self._held_logprobs())]
        deltas = []
        for i, (name, arguments) in enumerate(split_calls(self.text)):
            if i == len(self._sent):
                self._sent.append(0)
                deltas.append(ToolCallChunk(index=i, id=f"call_{uuid.uuid4().hex[:24]}", name=name, arguments=arguments))
            elif len(arguments) > self._sent[i]:
                deltas.append(ToolCallChunk(index=i, arguments=arguments[self._sent[i]:]))
            self._sent[i] = len(arguments)
        return [AssistantChunk(tool_call_chunks=deltas)] if deltas else []

    def end(self, finish: str | None, usage: Any) -> AssistantChunk:
        """The last chunk: the finish reason (``tool_calls`` for a complete call), usage, held-back text."""
        if self.calls and finish == "stop":
            finish = "tool_calls"
        held = self.text if self.calls is None else ""
        logprobs = self._held_logprobs()
        if self.calls and logprobs is not None:
            logprobs = []  # tool calls are not content: asked for, but none
        return AssistantChunk(content=held, finish_reason=finish, usage=usage, logprobs=logprobs)

    def _held_logprobs(self) -> list[TokenLogprob] | None:
        held, self.logprobs = self.logprobs, ([] if self.logprobs is not None else None)
        return held


def split_calls(text: str) -> list[tuple[str, str]]:
    """``(name, arguments so far)`` of each call in a (partial) reply in the grammar's call form."""
    calls: list[tuple[str, str]] = []
    i = 1 if text.startswith("[") else 0
    while (head := _CALL_HEAD.match(text, i)) is not None:
        start = head.end()
        end = _value_end(text, start)
        calls.append((head.group(1), text[start:end]))
        if end == len(text) or not text.startswith("}, ", end):
            break
        i = end + 3
    return calls


def _value_end(text: str, start: int) -> int:
    """Where the JSON object or array starting at ``start`` ends (``len(text)`` if it has not yet)."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            escaped, in_string = (False, True) if escaped else (c == "\\", c != '"')
        elif c == '"':
            in_string = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def to_message(total: AssistantChunk) -> AssistantMessage:
    """The reply as a message; a call cut short by ``max_tokens`` (finish ``length``) is left out."""
    if total.finish_reason == "length" and total.tool_call_chunks:
        whole = []
        for c in total.tool_call_chunks:
            try:
                json.loads(c.arguments)
                whole.append(c)
            except json.JSONDecodeError:
                pass
        total = total.model_copy(update={"tool_call_chunks": whole})
    return total.to_message()
