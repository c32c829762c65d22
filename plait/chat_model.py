"""The chat-model interface every backend (remote, local, fake) implements.

Contract: a backend subclasses :class:`ChatModel` and implements ``_generate(messages, options)``
returning an :class:`AssistantMessage`. Where it truly streams it also implements ``_stream``
(yielding :class:`AssistantChunk` that add up to the message); where it has a native async client,
``_agenerate`` / ``_astream``. Options are validated by the class's ``Options`` pydantic model
(``extra="forbid"``: an unknown option is an error, never silently dropped).

Input: a string, a prompt value, a message or a list of messages. Output: an AssistantMessage.

Example::

    from plait.fake import FakeChatModel
    model = FakeChatModel(["Hello there"])
    model.invoke("hi").content            # "Hello there"
    [c.content for c in model.stream("hi")]  # ["Hello", " there"]
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from plait.messages import AssistantChunk, AssistantMessage, Message, ToolCallChunk, to_messages
from plait.runnable import Runnable, _iter_in_thread


class ChatOptions(BaseModel):
    """Generation options every backend understands. Backends subclass to add their own."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None


class ChatModel(Runnable[Any, AssistantMessage]):
    """Base class of chat models. See the module docstring for the contract."""

    Options: ClassVar[type[ChatOptions]] = ChatOptions
    #: Capabilities, as class attributes (like simonw/llm's ``can_stream``).
    can_stream: ClassVar[bool] = False
    supports_tools: ClassVar[bool] = False
    model_name: str = "chat-model"

    def __init__(self, **options: Any) -> None:
        self.default_options = self.validate_options(options)

    def get_name(self) -> str:
        return self.name or f"{type(self).__name__}({self.model_name})"

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Check options against ``Options``; returns only those that were set."""
        if not options:
            return {}
        if isinstance(options.get("stop"), str):
            options = {**options, "stop": [options["stop"]]}
        try:
            return self.Options(**options).model_dump(exclude_unset=True)
        except ValidationError as e:
            known = sorted(self.Options.model_fields)
            raise ValueError(f"Invalid options for {type(self).__name__}: {e.errors()[0]['msg']} "
                             f"({', '.join(str(x['loc'][0]) for x in e.errors())}). Known options: {known}") from e

    def _options(self, call_options: dict[str, Any]) -> dict[str, Any]:
        if not call_options:
            return self.default_options
        return {**self.default_options, **self.validate_options(call_options)}

    # --- what a backend implements ---------------------------------------------------------------
    def _generate(self, messages: list[Message], options: dict[str, Any]) -> AssistantMessage:
        raise NotImplementedError(f"{type(self).__name__} must implement _generate()")

    def _stream(self, messages: list[Message], options: dict[str, Any]) -> Iterator[AssistantChunk]:
        msg = self._generate(messages, options)
        yield AssistantChunk(content=msg.content, usage=msg.usage, finish_reason=msg.finish_reason,
                             model=msg.model, id=msg.id, tool_call_chunks=[
                                 ToolCallChunk(index=i, id=tc.id, name=tc.name, arguments=json.dumps(tc.arguments))
                                 for i, tc in enumerate(msg.tool_calls)])

    async def _agenerate(self, messages: list[Message], options: dict[str, Any]) -> AssistantMessage:
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(None, lambda: ctx.run(self._generate, messages, options))

    async def _astream(self, messages: list[Message], options: dict[str, Any]) -> AsyncIterator[AssistantChunk]:
        async for chunk in _iter_in_thread(lambda: self._stream(messages, options)):
            yield chunk

    # --- the Runnable side -----------------------------------------------------------------------
    def invoke(self, input: Any, **options: Any) -> AssistantMessage:
        return self._generate(to_messages(input), self._options(options))

    async def ainvoke(self, input: Any, **options: Any) -> AssistantMessage:
        return await self._agenerate(to_messages(input), self._options(options))

    def stream(self, input: Any, **options: Any) -> Iterator[AssistantChunk]:  # type: ignore[override]
        yield from self._stream(to_messages(input), self._options(options))

    async def astream(self, input: Any, **options: Any) -> AsyncIterator[AssistantChunk]:  # type: ignore[override]
        async for chunk in self._astream(to_messages(input), self._options(options)):
            yield chunk
