"""A scripted chat model for tests and examples: replies from a list, streamed token by token.

It does no work, so chains built on it measure plait's own overhead. Not a model backend:
use it to test composition, never to test a backend.

Example::

    from plait.fake import FakeChatModel
    model = FakeChatModel(["It is Paris."])
    [c.content for c in model.stream("Capital of France?")]  # ["It", " is", " Paris."]
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from plait.chat_model import ChatModel
from plait.messages import AssistantChunk, AssistantMessage, Message, ToolCall, Usage

_TOKEN = re.compile(r"\s*\S+|\s+")


def split_tokens(text: str) -> list[str]:
    """Split text into word-like tokens that join back to the same text."""
    return _TOKEN.findall(text)


class FakeChatModel(ChatModel):
    """Replies with the given texts (or messages) in turn, cycling; streams them word by word.

    Args:
        replies: texts or AssistantMessages, used in order and then from the start again; or a
            function from the messages to the reply text.
        delay: seconds to sleep before each streamed token (to simulate a slow model).
    """

    can_stream = True
    supports_tools = True
    io_bound = False
    model_name = "fake"

    def __init__(self, replies: Sequence[str | AssistantMessage] | Callable[[list[Message]], str],
                 delay: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        self.replies = replies
        self.delay = delay
        self.calls: list[list[Message]] = []
        self._i = 0
        self._lock = threading.Lock()

    def _next(self, messages: list[Message]) -> AssistantMessage:
        with self._lock:
            self.calls.append(messages)
            if callable(self.replies):
                reply: str | AssistantMessage = self.replies(messages)
            else:
                if not self.replies:
                    raise ValueError("FakeChatModel has no replies to give")
                reply = self.replies[self._i % len(self.replies)]
                self._i += 1
        if isinstance(reply, AssistantMessage):
            return reply
        return AssistantMessage(content=reply, model=self.model_name, finish_reason="stop")

    def _generate(self, messages: list[Message], options: dict[str, Any]) -> AssistantMessage:
        msg = self._next(messages)
        stops = options.get("stop")
        if stops:
            cut = min((i for i in (msg.content.find(s) for s in stops) if i >= 0), default=-1)
            if cut >= 0:
                msg = msg.model_copy(update={"content": msg.content[:cut]})
        return msg

    def _chunks(self, msg: AssistantMessage) -> list[AssistantChunk]:
        chunks = [AssistantChunk(content=t, model=self.model_name) for t in split_tokens(msg.content)]
        if msg.tool_calls:
            import json

            from plait.messages import ToolCallChunk
            chunks.append(AssistantChunk(tool_call_chunks=[
                ToolCallChunk(index=i, id=tc.id, name=tc.name, arguments=json.dumps(tc.arguments))
                for i, tc in enumerate(msg.tool_calls)]))
        n = len(chunks)
        chunks.append(AssistantChunk(finish_reason=msg.finish_reason or "stop",
                                     usage=Usage(completion_tokens=n, total_tokens=n)))
        return chunks

    def _stream(self, messages: list[Message], options: dict[str, Any]) -> Iterator[AssistantChunk]:
        for chunk in self._chunks(self._generate(messages, options)):
            if self.delay and chunk.content:
                time.sleep(self.delay)
            yield chunk

    async def _agenerate(self, messages: list[Message], options: dict[str, Any]) -> AssistantMessage:
        return self._generate(messages, options)

    async def _astream(self, messages: list[Message], options: dict[str, Any]) -> AsyncIterator[AssistantChunk]:
        for chunk in self._chunks(self._generate(messages, options)):
            if self.delay and chunk.content:
                await asyncio.sleep(self.delay)
            yield chunk


def tool_call(name: str, arguments: dict[str, Any] | None = None, id: str = "call_0") -> AssistantMessage:
    """A scripted reply that asks for one tool call (for agent tests)."""
    return AssistantMessage(content="", tool_calls=[ToolCall(id=id, name=name, arguments=arguments or {})],
                            finish_reason="tool_calls")
