"""Chat models behind any OpenAI-compatible API (OpenAI, vLLM, Ollama, llama.cpp server, plait serve).

Uses the official ``openai`` SDK: sync and async clients, SSE streaming (text and tool calls),
native tools and ``response_format`` JSON schema. Settings, retries and errors: see
:mod:`plait.remote._openai`. A stream that ends before the server's finish reason raises
:class:`~plait.remote._openai.StreamInterruptedError`; it is never handed back as complete.

Example::

    from plait.remote.openai_chat import OpenAIChatModel
    model = OpenAIChatModel("gpt-4o-mini", temperature=0)              # OPENAI_API_KEY from the env
    local = OpenAIChatModel("qwen2.5", base_url="http://localhost:11434/v1")   # Ollama
    model.invoke("Capital of France?").content
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from plait.chat_model import ChatModel, ChatOptions
from plait.messages import (
    AssistantChunk,
    AssistantMessage,
    Message,
    TokenLogprob,
    ToolCall,
    ToolCallChunk,
    ToolMessage,
    TopLogprob,
    Usage,
)
from plait.remote._openai import OpenAISettings, RemoteModelError, StreamInterruptedError

# Options sent to the API under the same name.
_PASSED = ("temperature", "top_p", "stop", "seed", "frequency_penalty", "presence_penalty", "logit_bias",
           "user", "parallel_tool_calls", "reasoning_effort", "response_format", "logprobs", "top_logprobs")


class OpenAIOptions(ChatOptions):
    """The common options plus those of the chat completions API; ``extra_body`` for server extras
    (e.g. vLLM's ``{"top_k": 20}``)."""

    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    extra_body: dict[str, Any] | None = None


def to_openai_message(m: Message) -> dict[str, Any]:
    """A plait message in the chat completions wire format."""
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.name and not isinstance(m, ToolMessage):
        out["name"] = m.name
    if isinstance(m, AssistantMessage) and m.tool_calls:
        out["content"] = m.content or None
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                             for c in m.tool_calls]
    if isinstance(m, ToolMessage):
        out["tool_call_id"] = m.tool_call_id
    return out


def _usage(u: Any) -> Usage | None:
    if u is None:
        return None
    return Usage(prompt_tokens=u.prompt_tokens or 0, completion_tokens=u.completion_tokens or 0,
                 total_tokens=u.total_tokens or 0)


def _logprobs(choice: Any) -> list[TokenLogprob] | None:
    """A choice's ``logprobs.content`` (OpenAI's format) as plait's; None when the server sent none."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if content is None:
        return None
    return [TokenLogprob(token=t.token, logprob=t.logprob, bytes=t.bytes, top_logprobs=[
        TopLogprob(token=c.token, logprob=c.logprob, bytes=c.bytes) for c in t.top_logprobs or []])
        for t in content]


class OpenAIChatModel(ChatModel):
    """A chat model served over the OpenAI chat completions API.

    Args:
        model: the model id on that server.
        base_url, api_key, organization: else ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` / ``OPENAI_ORG_ID``.
        timeout: seconds one call may take, all attempts and waits included. attempt_timeout: seconds
            per attempt (default: ``timeout``). max_retries: retries of 429/5xx/connection errors.
            max_retry_wait: the longest wait before a retry (20 s): a server asking for longer is not
                retried, the error says what it asked for.
        stream_usage: ask for token usage at the end of streams (``stream_options``).
        supports_tools, supports_json_schema: set False for a server without native tools or JSON
            schema output; plait then does them by prompting.
        **options: default generation options (see :class:`OpenAIOptions`).
    """

    Options = OpenAIOptions
    can_stream = True
    supports_tools = True
    supports_json_schema = True
    #: ``generate(input, n=k)`` / ``stream_choices`` send ``n`` to the server; a server that sends back
    #: fewer choices (Ollama ignores ``n``) is an error. Usage, which the server counts for all choices
    #: together, rides on choice 0.
    supports_n = True

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 organization: str | None = None, timeout: float = 60.0, max_retries: int = 3,
                 attempt_timeout: float | None = None, max_retry_wait: float = 20.0,
                 stream_usage: bool = True, supports_tools: bool | None = None,
                 supports_json_schema: bool | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.model_name = model
        self.settings = OpenAISettings(base_url, api_key, organization, timeout=timeout, max_retries=max_retries,
                                       attempt_timeout=attempt_timeout, max_retry_wait=max_retry_wait)
        self.stream_usage = stream_usage
        if supports_tools is not None:
            self.supports_tools = supports_tools
        if supports_json_schema is not None:
            self.supports_json_schema = supports_json_schema

    def __repr__(self) -> str:
        return f"OpenAIChatModel({self.model_name!r}, base_url={self.settings.base_url!r})"

    # --- request and reply -----------------------------------------------------------------------
    def _request(self, messages: list[Message], options: dict[str, Any], stream: bool) -> dict[str, Any]:
        req: dict[str, Any] = {"model": self.model_name, "messages": [to_openai_message(m) for m in messages]}
        req.update({k: options[k] for k in _PASSED if options.get(k) is not None})
        if not options.get("logprobs"):
            req.pop("top_logprobs", None)  # logprobs=False in a call turns off a default top_logprobs too
        if options.get("max_tokens") is not None:
            # api.openai.com wants the newer name; other servers know the classic one.
            req["max_completion_tokens" if self.settings.is_openai else "max_tokens"] = options["max_tokens"]
        if options.get("tools"):
            req["tools"] = [t.to_openai() for t in options["tools"]]
            choice = options.get("tool_choice")
            if choice in ("auto", "none", "required"):
                req["tool_choice"] = choice
            elif choice:
                req["tool_choice"] = {"type": "function", "function": {"name": choice}}
        if options.get("extra_body"):
            req["extra_body"] = options["extra_body"]
        if stream:
            req["stream"] = True
            if self.stream_usage:
                req["stream_options"] = {"include_usage": True}
        return req

    def _message(self, resp: Any, index: int = 0) -> AssistantMessage:
        if not getattr(resp, "choices", None):
            raise RemoteModelError(f"{self.settings.base_url} sent a chat reply without choices: {resp!r:.300}")
        choice = next((c for c in resp.choices if c.index == index), None) if index else resp.choices[0]
        if choice is None:
            raise RemoteModelError(f"{self.settings.base_url} sent {len(resp.choices)} choice(s) for a request with "
                                   f"n={index + 1} or more: the server does not support 'n'; ask for one at a time")
        calls = []
        for tc in choice.message.tool_calls or []:
            raw = tc.function.arguments or ""
            try:
                args = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as e:
                raise ValueError(f"Tool call {tc.function.name!r} from {self.model_name} has arguments that are "
                                 f"not valid JSON: {raw!r}") from e
            calls.append(ToolCall(id=tc.id, name=tc.function.name, arguments=args))
        return AssistantMessage(content=choice.message.content or "", tool_calls=calls,
                                usage=_usage(resp.usage) if index == 0 else None,
                                finish_reason=choice.finish_reason, model=resp.model, id=resp.id,
                                logprobs=_logprobs(choice))

    def _chunk(self, raw: Any, first: bool, choice: Any = None) -> AssistantChunk:
        chunk = AssistantChunk(usage=_usage(getattr(raw, "usage", None)),
                               model=raw.model if first else None, id=raw.id if first else None)
        choice = choice if choice is not None else (raw.choices[0] if raw.choices else None)
        if choice is not None:
            delta = choice.delta
            chunk.content = (delta.content or "") if delta else ""
            chunk.finish_reason = choice.finish_reason
            chunk.logprobs = _logprobs(choice)
            chunk.tool_call_chunks = [
                ToolCallChunk(index=tc.index, id=tc.id, name=tc.function.name if tc.function else None,
                              arguments=(tc.function.arguments or "") if tc.function else "")
                for tc in (delta.tool_calls or [] if delta else [])]
        return chunk

    def _interrupted(self, e: BaseException | None, n: int) -> StreamInterruptedError:
        cause = (e.__cause__ or e) if e is not None else None
        what = "broke off"
        if isinstance(cause, json.JSONDecodeError):
            what = "sent an event that is not valid JSON"
        why = f" ({type(cause).__name__}: {cause})" if cause is not None else " without a finish reason"
        return StreamInterruptedError(f"The stream from {self.settings.base_url} ({self.model_name}) {what} "
                                      f"after {n} chunks{why}. The answer is incomplete; retry the request")

    def _create(self, req: dict[str, Any]) -> Any:
        """Send the request with plait's retries under one deadline (see :mod:`plait.remote._openai`)."""
        return self.settings.call(lambda client, timeout: client.chat.completions.create(**req, timeout=timeout),
                                  self.model_name, "chat")

    async def _acreate(self, req: dict[str, Any]) -> Any:
        return await self.settings.acall(
            lambda client, timeout: client.chat.completions.create(**req, timeout=timeout), self.model_name, "chat")

    # --- the backend contract --------------------------------------------------------------------
    def _generate(self, messages: list[Message], options: dict[str, Any]) -> AssistantMessage:
        return self._message(self._create(self._request(messages, options, stream=False)))

    async def _agenerate(self, messages: list[Message], options: dict[str, Any]) -> AssistantMessage:
        return self._message(await self._acreate(self._request(messages, options, stream=False)))

    def _stream(self, messages: list[Message], options: dict[str, Any]) -> Iterator[AssistantChunk]:
        stream = self._create(self._request(messages, options, stream=True))
        got = _Received(self)
        with stream, got.reading():
            yield from map(got.chunk, stream)

    def _generate_n(self, messages: list[Message], options: dict[str, Any], n: int) -> list[AssistantMessage]:
        resp = self._create({**self._request(messages, options, stream=False), "n": n})
        return [self._message(resp, i) for i in range(n)]

    def _stream_n(self, messages: list[Message], options: dict[str, Any],
                  n: int) -> Iterator[tuple[int, AssistantChunk]]:
        stream = self._create({**self._request(messages, options, stream=True), "n": n})
        got = _Received(self, n)
        with stream, got.reading():
            for raw in stream:
                yield from got.choices(raw)

    async def _astream(self, messages: list[Message], options: dict[str, Any]) -> AsyncIterator[AssistantChunk]:
        stream = await self._acreate(self._request(messages, options, stream=True))
        got = _Received(self)
        async with stream:
            with got.reading():
                async for raw in stream:
                    yield got.chunk(raw)


class _Received:
    """One stream's bookkeeping: numbering its chunks, noticing its finish, naming a break."""

    def __init__(self, model: OpenAIChatModel, choices: int = 1) -> None:
        self.model, self.n, self.finished = model, 0, False
        self.choices_left = set(range(choices))  # choices not finished yet
        self.seen: set[int] = set()  # choices started

    def chunk(self, raw: Any) -> AssistantChunk:
        chunk = self.model._chunk(raw, first=(self.n == 0))
        self.finished = self.finished or chunk.finish_reason is not None
        self.n += 1
        return chunk

    def choices(self, raw: Any) -> Iterator[tuple[int, AssistantChunk]]:
        """``(index, chunk)`` of each choice in an event of a stream with ``n`` choices (usage: choice 0)."""
        self.n += 1
        for choice in raw.choices or []:
            first = choice.index not in self.seen
            self.seen.add(choice.index)
            chunk = self.model._chunk(raw, first, choice)
            chunk.usage = None  # the usage of all choices, sent once below
            if chunk.finish_reason is not None:
                self.choices_left.discard(choice.index)
            yield choice.index, chunk
        if getattr(raw, "usage", None) is not None:
            yield 0, AssistantChunk(usage=_usage(raw.usage))
        self.finished = not self.choices_left

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """A stream that breaks off, or ends without a finish reason, raises StreamInterruptedError."""
        try:
            yield
        except Exception as e:
            raise self.model._interrupted(e, self.n) from e
        if not self.finished and self.seen and self.seen.isdisjoint(self.choices_left):
            # every choice that came is finished, but some never came: a server that ignores n
            raise RemoteModelError(f"{self.model.settings.base_url} streamed {len(self.seen)} choice(s) for a "
                                   f"request with n={len(self.seen) + len(self.choices_left)}: the server does not "
                                   f"support 'n'; ask for one at a time")
        if not self.finished:
            raise self.model._interrupted(None, self.n)
