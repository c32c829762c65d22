"""The chat-model interface every backend (remote, local, fake) implements.

Contract: a backend subclasses :class:`ChatModel` and implements ``_generate(messages, options)``
returning an :class:`AssistantMessage`. Where it truly streams it also implements ``_stream``
(yielding :class:`AssistantChunk` that add up to the message); where it has a native async client,
``_agenerate`` / ``_astream``. Options are validated by the class's ``Options`` pydantic model
(``extra="forbid"``: an unknown option is an error, never silently dropped).

Capabilities are class attributes (an instance may override them):

- ``supports_tools``: the backend takes ``tools`` / ``tool_choice`` options itself. When False,
  this base class does tool calling by prompting (see :mod:`plait.prompted_tools`): the backend
  never sees those options, nor tool messages, and its text reply is parsed into tool calls.
- ``supports_json_schema``: the backend takes ``response_format`` itself. When False, the schema
  is put in the system message instead.

So a backend that only generates text gets :meth:`bind_tools` and :meth:`with_structured_output`
for free. Input: a string, a prompt value, a message or a list of messages. Output: an
AssistantMessage (content, tool calls, usage, finish reason, model id).

Example::

    from plait.fake import FakeChatModel
    model = FakeChatModel(["Hello there"])
    model.invoke("hi").content            # "Hello there"
    [c.content for c in model.stream("hi")]  # ["Hello", " there"]
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from plait import prompted_tools as pt
from plait._bridge import iter_in_thread
from plait.messages import AssistantChunk, AssistantMessage, Message, ToolCallChunk, to_messages
from plait.runnable import Runnable
from plait.tools import Tool, to_tool

if TYPE_CHECKING:
    from plait.structured_output import StructuredOutput


class ChatOptions(BaseModel):
    """Generation options every backend understands. Backends subclass to add their own.

    ``tools`` / ``tool_choice`` / ``response_format`` are usually set through :meth:`ChatModel.bind_tools`
    and :meth:`ChatModel.with_structured_output`; tools may also be given in the OpenAI wire form.
    ``tool_choice`` is ``"auto"``, ``"none"``, ``"required"`` or the name of one tool (or the
    OpenAI ``{"type": "function", "function": {"name": ...}}`` form). ``response_format`` follows the OpenAI shape:
    ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {"name", "schema"}}``.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True, arbitrary_types_allowed=True)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    tools: list[Tool] | None = None
    tool_choice: str | None = None
    response_format: dict[str, Any] | None = None


# Options this base class may take over from a backend without native support.
_TOOL_OPTIONS = ("tools", "tool_choice")


class ChatModel(Runnable[Any, AssistantMessage]):
    """Base class of chat models. See the module docstring for the contract."""

    Options: ClassVar[type[ChatOptions]] = ChatOptions
    #: Capabilities, as class attributes (like simonw/llm's ``can_stream``); instances may override.
    can_stream: ClassVar[bool] = False
    supports_tools: bool = False
    supports_json_schema: bool = False
    #: ``n`` replies to one prompt in one request (:meth:`generate`, :meth:`stream_choices`).
    supports_n: bool = False
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
        choice = options.get("tool_choice")
        if isinstance(choice, dict) and isinstance(choice.get("function"), dict):  # the OpenAI wire form
            options = {**options, "tool_choice": choice["function"].get("name")}
        elif choice == "any":  # LangChain's / Anthropic's name for "required"
            options = {**options, "tool_choice": "required"}
        if options.get("tools") is not None:
            try:
                options = {**options, "tools": [to_tool(t) for t in options["tools"]]}
            except (TypeError, ValueError) as e:
                raise ValueError(f"Invalid tools option for {type(self).__name__}: {e}") from e
            names = [t.name for t in options["tools"]]
            if len(set(names)) != len(names):
                raise ValueError(f"Two tools share a name: {names}; give each tool a unique name")
        try:
            checked = self.Options(**options).model_dump(exclude_unset=True)
        except ValidationError as e:
            known = sorted(self.Options.model_fields)
            raise ValueError(f"Invalid options for {type(self).__name__}: {e.errors()[0]['msg']} "
                             f"({', '.join(str(x['loc'][0]) for x in e.errors())}). Known options: {known}") from e
        choice = checked.get("tool_choice")
        if choice not in (None, "auto", "none", "required"):
            names = [t.name for t in checked.get("tools") or []]
            if choice not in names:
                raise ValueError(f"tool_choice={choice!r} names no bound tool: use 'auto', 'none', "
                                 f"'required' or one of {names}")
        return checked

    def _options(self, call_options: dict[str, Any]) -> dict[str, Any]:
        if not call_options:
            return self.default_options
        return {**self.default_options, **self.validate_options(call_options)}

    # --- tools and structured output --------------------------------------------------------------
    def with_options(self, **options: Any) -> ChatModel:
        """A copy of this model (sharing its weights and clients) with more default options."""
        new = copy.copy(self)
        new.default_options = {**self.default_options, **self.validate_options(options)}
        return new

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None) -> ChatModel:
        """A copy of this model that may call ``tools`` (functions, pydantic models, Tools or tool dicts).

        The reply's ``tool_calls`` name the tool and its arguments; running them is up to the caller
        (see :meth:`plait.tools.Tool.invoke`). ``tool_choice``: "auto" (default), "none", "required"
        or a tool name.
        """
        options: dict[str, Any] = {"tools": [to_tool(t) for t in tools]}
        if tool_choice is not None:
            options["tool_choice"] = tool_choice
        return self.with_options(**options)

    def with_structured_output(self, schema: type[BaseModel], *,
                               method: Literal["auto", "json_schema", "tool_calling", "json_prompt"] = "auto",
                               include_raw: bool = False) -> StructuredOutput:
        """A Runnable that returns a validated ``schema`` instance instead of a message.

        ``method="auto"`` uses the backend's JSON-schema output where it has it, else its native tool
        calling, else a prompted JSON answer. An answer that fails validation is sent back once with
        the error; a second failure raises :class:`plait.parsers.OutputParserError`.
        """
        from plait.structured_output import StructuredOutput

        return StructuredOutput(self, schema, method=method, include_raw=include_raw)

    def tool_prompt(self, tools: list[Tool], tool_choice: str | None) -> str:
        """System-message text for prompted tool calling; a backend may override it with the format its
        model family was trained on (the parser also reads ``<tool_call>`` tags and ``{"name": ...}``)."""
        return pt.tool_instructions(tools, tool_choice)

    def json_prompt(self, response_format: dict[str, Any]) -> str:
        """System-message text asking for JSON output, for a backend without native JSON schema."""
        return pt.json_instructions(response_format)

    def _prepare(self, messages: list[Message],
                 options: dict[str, Any]) -> tuple[list[Message], dict[str, Any], list[Tool] | None]:
        """Take over tools / JSON schema for a backend without them; returns the tools to parse for."""
        prompted: list[Tool] | None = None
        if not self.supports_tools:
            messages = pt.flatten_tool_history(messages)
            tools, choice = options.get("tools"), options.get("tool_choice")
            if any(k in options for k in _TOOL_OPTIONS):
                options = {k: v for k, v in options.items() if k not in _TOOL_OPTIONS}
            if tools and choice != "none":
                messages = pt.add_system(messages, self.tool_prompt(tools, choice))
                prompted = tools
        if options.get("response_format") and not self.supports_json_schema:
            messages = pt.add_system(messages, self.json_prompt(options["response_format"]))
            options = {k: v for k, v in options.items() if k != "response_format"}
        return messages, options, prompted

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
        async for chunk in iter_in_thread(lambda: self._stream(messages, options)):
            yield chunk

    def _stream_n(self, messages: list[Message], options: dict[str, Any],
                  n: int) -> Iterator[tuple[int, AssistantChunk]]:
        """``(choice index, chunk)`` of ``n`` replies; backends with ``supports_n`` implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement _stream_n() (it sets supports_n)")

    def _generate_n(self, messages: list[Message], options: dict[str, Any], n: int) -> list[AssistantMessage]:
        totals = [AssistantChunk() for _ in range(n)]
        for i, chunk in self._stream_n(messages, options, n):
            totals[i] = totals[i] + chunk
        return [t.to_message() for t in totals]

    # --- the Runnable side -----------------------------------------------------------------------
    def invoke(self, input: Any, **options: Any) -> AssistantMessage:
        messages, opts, prompted = self._prepare(to_messages(input), self._options(options))
        msg = self._generate(messages, opts)
        return pt.with_parsed_calls(msg, prompted) if prompted else msg

    async def ainvoke(self, input: Any, **options: Any) -> AssistantMessage:
        messages, opts, prompted = self._prepare(to_messages(input), self._options(options))
        msg = await self._agenerate(messages, opts)
        return pt.with_parsed_calls(msg, prompted) if prompted else msg

    def stream(self, input: Any, **options: Any) -> Iterator[AssistantChunk]:  # type: ignore[override]
        messages, opts, prompted = self._prepare(to_messages(input), self._options(options))
        chunks = self._stream(messages, opts)
        yield from pt.stream_calls(chunks, prompted) if prompted else chunks

    async def astream(self, input: Any, **options: Any) -> AsyncIterator[AssistantChunk]:  # type: ignore[override]
        messages, opts, prompted = self._prepare(to_messages(input), self._options(options))
        chunks = self._astream(messages, opts)
        async for chunk in pt.astream_calls(chunks, prompted) if prompted else chunks:
            yield chunk

    # --- several replies to one input (OpenAI's and LangChain's ``n``) ----------------------------
    def generate(self, input: Any, *, n: int, **options: Any) -> list[AssistantMessage]:
        """``n`` replies to one input, in one request where the backend can (``supports_n``).

        Sampled replies (``temperature`` > 0) differ; how a ``seed`` is shared out between them is
        the backend's (see its docs). ``n=1`` works with every model and is ``[invoke(input)]``.

        Example: ``[m.content for m in model.generate("Name a color.", n=3, temperature=1.0)]``.
        """
        if n == 1:
            return [self.invoke(input, **options)]
        messages, opts = self._n_request(input, options, n)
        return self._generate_n(messages, opts, n)

    def stream_choices(self, input: Any, *, n: int, **options: Any) -> Iterator[tuple[int, AssistantChunk]]:
        """``(choice index, chunk)`` pairs of ``n`` replies as they are made; each choice's chunks
        add up to its reply, and each choice ends with its own chunk with a ``finish_reason``."""
        if n == 1:
            yield from ((0, c) for c in self.stream(input, **options))
            return
        messages, opts = self._n_request(input, options, n)
        yield from self._stream_n(messages, opts, n)

    async def astream_choices(self, input: Any, *, n: int,
                              **options: Any) -> AsyncIterator[tuple[int, AssistantChunk]]:
        """:meth:`stream_choices`, from async code (the sync stream runs in a worker thread)."""
        async for pair in iter_in_thread(lambda: self.stream_choices(input, n=n, **options)):
            yield pair

    def _n_request(self, input: Any, options: dict[str, Any], n: int) -> tuple[list[Message], dict[str, Any]]:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a whole number >= 1, got {n!r}")
        if not self.supports_n:
            raise ValueError(f"{type(self).__name__} gives one reply per request; n={n} needs a model with "
                             "supports_n (the local model, or an OpenAI-compatible server). Call it n times "
                             "instead (with different seeds).")
        messages, opts, prompted = self._prepare(to_messages(input), self._options(options))
        if prompted:
            raise ValueError(f"n={n} with tools prompted by plait (supports_tools=False) is not supported; "
                             "ask for one reply at a time.")
        return messages, opts
