"""Request guards as plain ASGI middleware: API-key auth, body size limit, concurrency limit.

Plain ASGI (not Starlette's ``BaseHTTPMiddleware``) so none of them touches the response
stream: a streamed token passes through them at no cost. Each answers in OpenAI's error format.

- :class:`APIKeyAuth`: ``Authorization: Bearer <key>`` on every route but the page and the
  health checks; compared in constant time.
- :class:`BodyLimit`: a ``Content-Length`` over the limit gets 413 before anything is read; a
  chunked body is counted as it arrives and cut off at the limit.
- :class:`ConcurrencyLimit`: at most N requests to the model routes at once (a stream counts
  until it ends); one more gets 429 with ``Retry-After``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Container
from typing import Any

from plait.serve.errors import APIError
from plait.serve.streaming import send_json

ASGIApp = Callable[..., Any]

#: Routes open without a key: the chat page (it asks for the key itself) and the health checks.
PUBLIC_PATHS = frozenset({"/", "/index.html", "/health", "/ready", "/favicon.ico"})
#: Routes that run the model, guarded by the concurrency limit.
MODEL_PREFIXES = ("/v1/chat/", "/v1/embeddings", "/v1/images/", "/invoke", "/batch", "/stream")


class APIKeyAuth:
    def __init__(self, app: ASGIApp, api_key: str, public: Container[str] = PUBLIC_PATHS) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()
        self.public = public

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.public or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if hmac.compare_digest(given, self.expected):
            return await self.app(scope, receive, send)
        message = ("Missing API key: send it as 'Authorization: Bearer <key>' (the OpenAI SDK's api_key)."
                   if not given else "Incorrect API key provided.")
        await send_json(send, 401, APIError(401, message, code="invalid_api_key").body(),
                        {"www-authenticate": "Bearer"})


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> APIError:
        return APIError(413, f"The request body is larger than this server's limit of {self.max_bytes} bytes; "
                             "send less (or ask the operator to raise --max-body).", code="request_too_large")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            err = self._error()
            return await send_json(send, 413, err.body(), {"connection": "close"})
        seen = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._error()
            return message

        await self.app(scope, limited_receive, send)


class ConcurrencyLimit:
    def __init__(self, app: ASGIApp, limit: int, retry_after_s: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_s)
        self.in_flight = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(MODEL_PREFIXES):
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            err = APIError(429, f"The server is busy ({self.limit} requests in flight); retry after "
                                f"{self.retry_after} s.", code="rate_limit_exceeded")
            return await send_json(send, 429, err.body(), {"retry-after": self.retry_after})
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
