"""What the OpenAI-compatible backends share: settings, lazy clients, and errors that say what to fix.

Settings come from arguments, else the usual environment variables: ``OPENAI_BASE_URL``,
``OPENAI_API_KEY``, ``OPENAI_ORG_ID``. A server other than api.openai.com may need no key
(vLLM, Ollama, llama.cpp server): then a placeholder is sent.

Waiting: ``timeout`` is one deadline for a whole call, all attempts and the waits between them
included; ``attempt_timeout`` (default: ``timeout``) limits each attempt. Calls made through
:meth:`OpenAISettings.call` / :meth:`~OpenAISettings.acall` (chat) are retried by plait, at most
``max_retries`` times: 408/409/429/5xx and connection errors, after the server's ``Retry-After`` /
``retry-after-ms``, else an exponential backoff
(0.5 s doubling to 8 s, with jitter). A server asking for a longer wait than ``max_retry_wait``
(20 s by default), or one that would pass the deadline, is not waited for: the error is raised
at once and says what the server asked for. The plain SDK clients (:meth:`~OpenAISettings.client`) retry as the
SDK does, with ``attempt_timeout`` per attempt. Other errors are not retried; they are raised
as :class:`RemoteModelError` with the server's message and what to change.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from plait.defaults import require

if TYPE_CHECKING:
    import openai

OPENAI_URL = "https://api.openai.com/v1"
T = TypeVar("T")
_RETRIED_STATUS = frozenset({408, 409, 429})


class RemoteModelError(RuntimeError):
    """A model server refused or failed a request.

    ``status`` is the HTTP status (None: no reply); ``detail`` and ``param`` are the server's own
    error message and the parameter it named, when it sent them.
    """

    def __init__(self, message: str, status: int | None = None, *, detail: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.param = param


class RemoteTimeoutError(RemoteModelError, TimeoutError):
    """The server did not answer within the timeout (after the retries)."""


class StreamInterruptedError(RemoteModelError):
    """A streamed answer broke off before its end: what arrived is incomplete."""


class OpenAISettings:
    """Where and how to reach an OpenAI-compatible server; makes the SDK clients on first use."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, organization: str | None = None,
                 timeout: float = 60.0, max_retries: int = 3, *, attempt_timeout: float | None = None,
                 max_retry_wait: float = 20.0) -> None:
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self.organization = organization or os.environ.get("OPENAI_ORG_ID")
        self.timeout = timeout
        self.attempt_timeout = min(attempt_timeout or timeout, timeout)
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._once: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # client -> without retries
        self._sync: openai.OpenAI | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    @property
    def is_openai(self) -> bool:
        return self.base_url.startswith(OPENAI_URL)

    def __repr__(self) -> str:
        return f"OpenAISettings(base_url={self.base_url!r}, timeout={self.timeout}, max_retries={self.max_retries})"

    def _kwargs(self) -> dict[str, Any]:
        key = self.api_key
        if not key:
            if self.is_openai:
                raise RemoteModelError("No API key for api.openai.com: set OPENAI_API_KEY or pass api_key=...; "
                                       "for another OpenAI-compatible server pass base_url=... (or set OPENAI_BASE_URL)")
            key = "not-needed"  # local servers (vLLM, Ollama, llama.cpp) accept any key
        return {"base_url": self.base_url, "api_key": key, "organization": self.organization,
                "timeout": self.attempt_timeout, "max_retries": self.max_retries}

    def client(self) -> openai.OpenAI:
        """The sync client (thread-safe; one per settings object)."""
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    require("openai", "openai")
                    import openai

                    self._sync = openai.OpenAI(**self._kwargs())
        return self._sync

    def aclient(self) -> openai.AsyncOpenAI:
        """The async client of the running event loop (its connections belong to that loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            found = self._async.get(loop)
            if found is None:
                require("openai", "openai")
                import openai

                found = self._async[loop] = openai.AsyncOpenAI(**self._kwargs())
        return found

    # --- retries under one deadline ------------------------------------------------------------
    def _without_retries(self, client: Any) -> Any:
        with self._lock:
            found = self._once.get(client)
            if found is None:
                found = self._once[client] = client.with_options(max_retries=0)
        return found

    def _retry_wait(self, e: BaseException, retries: int, deadline: float) -> float | None:
        """Seconds to wait before the next attempt; None when ``e`` is not retried (or no time is left)."""
        import openai

        if retries >= self.max_retries:
            return None
        wait: float | None = None
        if isinstance(e, openai.APIStatusError):
            if e.status_code not in _RETRIED_STATUS and e.status_code < 500:
                return None
            wait = _retry_after(e.response.headers)
        elif not isinstance(e, openai.APIConnectionError):  # timeouts are connection errors too
            return None
        if wait is None:
            wait = min(0.5 * 2.0 ** retries, 8.0) * (1 - 0.25 * random.random())
        if wait > self.max_retry_wait or time.monotonic() + wait >= deadline:
            return None  # a server asking for longer will not answer sooner: say so now
        return wait

    def _attempt_timeout(self, deadline: float) -> float:
        return max(min(self.attempt_timeout, deadline - time.monotonic()), 0.001)

    def call(self, send: Callable[[Any, float], T], model: str, what: str) -> T:
        """``send(client, attempt_timeout)`` with plait's retries, under one deadline (see the module docstring)."""
        deadline = time.monotonic() + self.timeout
        retries = 0
        while True:
            try:
                return send(self._without_retries(self.client()), self._attempt_timeout(deadline))
            except Exception as e:
                wait = self._retry_wait(e, retries, deadline)
                if wait is None:
                    raise self.error(e, model, what, retries) from e
            time.sleep(wait)
            retries += 1

    async def acall(self, send: Callable[[Any, float], Awaitable[T]], model: str, what: str) -> T:
        """The async twin of :meth:`call`."""
        deadline = time.monotonic() + self.timeout
        retries = 0
        while True:
            try:
                return await send(self._without_retries(self.aclient()), self._attempt_timeout(deadline))
            except Exception as e:
                wait = self._retry_wait(e, retries, deadline)
                if wait is None:
                    raise self.error(e, model, what, retries) from e
            await asyncio.sleep(wait)
            retries += 1

    # --- errors ----------------------------------------------------------------------------------
    def error(self, e: BaseException, model: str, what: str, retries: int | None = None) -> BaseException:
        """Turn an SDK / transport exception into a RemoteModelError that says what to fix.

        ``retries``: how many retries were made (default: ``max_retries``, as the SDK's own retries)."""
        import openai

        where = self.base_url
        n = self.max_retries if retries is None else retries
        retried = f" (after {n} {'retry' if n == 1 else 'retries'})" if n else ""
        if isinstance(e, openai.APIStatusError):
            status = e.status_code
            asked = _retry_after(e.response.headers) if status == 429 else None
            body = e.body if isinstance(e.body, dict) else {}
            detail = body.get("message") or e.message
            param = f" (parameter {body['param']!r})" if body.get("param") else ""
            if status == 401:
                msg = (f"{where} rejected the API key (401: {detail}). Set OPENAI_API_KEY or pass api_key=... "
                       "with a valid key for this server")
            elif status == 403:
                msg = f"{where} refused access to {model!r} (403: {detail}). Check the key's permissions/organization"
            elif status == 404:
                msg = (f"{where} has no model {model!r} or no {what} endpoint (404: {detail}). Check the model name "
                       f"(GET {where}/models lists them) and that base_url ends in /v1")
            elif status in (400, 422):
                msg = f"{where} rejected the {what} request{param} (status {status}: {detail}). Fix that option or input"
            elif status == 429:
                wait = (f"; it asked to wait {asked:g} s, longer than max_retry_wait ({self.max_retry_wait:g} s) "
                        "or the time left") if asked is not None else ""
                msg = (f"{where} is still rate-limiting{retried} (429: {detail}{wait}). Send fewer requests, "
                       "or raise max_retries or timeout")
            elif status >= 500:
                msg = f"{where} failed with a server error{retried} ({status}: {detail}). Try again later"
            else:
                msg = f"{where} answered the {what} request with status {status}: {detail}"
            return RemoteModelError(msg, status, detail=str(detail), param=body.get("param"))
        if isinstance(e, openai.APITimeoutError):
            return RemoteTimeoutError(f"No answer from {where} within {self.timeout:g} s{retried}. "
                                      "Raise timeout=... or check the server's load")
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e
            return RemoteModelError(f"Could not reach {where}{retried}: {type(cause).__name__}: {cause}. "
                                    "Check that the server is running and base_url is right")
        if isinstance(e, (json.JSONDecodeError, openai.APIResponseValidationError)):
            return RemoteModelError(f"{where} sent a {what} reply that is not valid OpenAI-format JSON ({e}). "
                                    "Is base_url an OpenAI-compatible endpoint (ending in /v1)?")
        return e


def _retry_after(headers: Any) -> float | None:
    """The wait a server asked for: ``retry-after-ms``, else ``Retry-After`` in seconds or as a date."""
    try:
        ms = headers.get("retry-after-ms")
        value = headers.get("retry-after")
        if ms is not None:
            seconds = float(ms) / 1000
        elif value is None:
            return None
        else:
            try:
                seconds = float(value)
            except ValueError:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None
