"""What the OpenAI-compatible backends share: settings, lazy clients, and errors that say what to fix.

Settings come from arguments, else the usual environment variables: ``OPENAI_BASE_URL``,
``OPENAI_API_KEY``, ``OPENAI_ORG_ID``. A server other than api.openai.com may need no key
(vLLM, Ollama, llama.cpp server): then a placeholder is sent.

Retries are the official SDK's own (``max_retries``): 408/409/429/5xx and connection errors are
retried with exponential backoff (0.5 s doubling to 8 s, with jitter), and a ``Retry-After`` /
``retry-after-ms`` header of up to 60 s is honoured. Other errors are not retried; they are
raised as :class:`RemoteModelError` with the server's message and what to change.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from plait.defaults import require

if TYPE_CHECKING:
    import openai

OPENAI_URL = "https://api.openai.com/v1"


class RemoteModelError(RuntimeError):
    """A model server refused or failed a request. ``status`` is the HTTP status (None: no reply)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RemoteTimeoutError(RemoteModelError, TimeoutError):
    """The server did not answer within the timeout (after the retries)."""


class StreamInterruptedError(RemoteModelError):
    """A streamed answer broke off before its end: what arrived is incomplete."""


class OpenAISettings:
    """Where and how to reach an OpenAI-compatible server; makes the SDK clients on first use."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, organization: str | None = None,
                 timeout: float = 60.0, max_retries: int = 3) -> None:
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self.organization = organization or os.environ.get("OPENAI_ORG_ID")
        self.timeout = timeout
        self.max_retries = max_retries
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
                "timeout": self.timeout, "max_retries": self.max_retries}

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

    # --- errors ----------------------------------------------------------------------------------
    def error(self, e: BaseException, model: str, what: str) -> BaseException:
        """Turn an SDK / transport exception into a RemoteModelError that says what to fix."""
        import openai

        where = self.base_url
        n = self.max_retries
        retried = f" (after {n} {'retry' if n == 1 else 'retries'})" if n else ""
        if isinstance(e, openai.APIStatusError):
            status = e.status_code
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
                msg = (f"{where} is still rate-limiting{retried} (429: {detail}). Send fewer requests, "
                       "or raise max_retries")
            elif status >= 500:
                msg = f"{where} failed with a server error{retried} ({status}: {detail}). Try again later"
            else:
                msg = f"{where} answered the {what} request with status {status}: {detail}"
            return RemoteModelError(msg, status)
        if isinstance(e, openai.APITimeoutError):
            return RemoteTimeoutError(f"No answer from {where} within {self.timeout} s{retried}. "
                                      "Raise timeout=... or check the server's load")
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e
            return RemoteModelError(f"Could not reach {where}{retried}: {type(cause).__name__}: {cause}. "
                                    "Check that the server is running and base_url is right")
        if isinstance(e, (json.JSONDecodeError, openai.APIResponseValidationError)):
            return RemoteModelError(f"{where} sent a {what} reply that is not valid OpenAI-format JSON ({e}). "
                                    "Is base_url an OpenAI-compatible endpoint (ending in /v1)?")
        return e
