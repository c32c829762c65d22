"""Request guards as plain ASGI middleware: Host check, API-key auth, JSON bodies, body limits, concurrency.

Plain ASGI (not Starlette's ``BaseHTTPMiddleware``) so none of them touches the response
stream: a streamed token passes through them at no cost. Each answers in OpenAI's error format.
From the outside in:

- :class:`HostCheck`: the ``Host`` header must name this server (the address the connection came
  in on, ``localhost``, ``127.0.0.1``, ``::1``, the name it was bound to, or an allowed host), so a
  web page cannot reach a key-less loopback server through DNS rebinding (400 otherwise).
- :class:`APIKeyAuth`: ``Authorization: Bearer <key>`` on every route but the page and the
  health checks; compared in constant time.
- :class:`JSONBody`: a request with a body must say ``Content-Type: application/json`` (415
  otherwise), so a page cannot send one cross-site without a CORS preflight. The whole body is
  read here, within ``body_timeout_s`` (408 past it) and ``max_bytes`` (413 past it; a
  ``Content-Length`` over the limit is refused before anything is read), before the request
  takes a concurrency slot: a client trickling its body never holds one.
- :class:`ConcurrencyLimit`: at most N requests to the model routes at once (a request counts
  until its model work has stopped); one more gets 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Container, Iterable
from typing import Any

from plait.serve.errors import APIError
from plait.serve.streaming import send_json

ASGIApp = Callable[..., Any]
log = logging.getLogger("plait.serve")

#: Routes open without a key: the chat page (it asks for the key itself) and the health checks.
PUBLIC_PATHS = frozenset({"/", "/index.html", "/health", "/ready", "/favicon.ico"})
#: Routes that run the model, guarded by the concurrency limit.
MODEL_PREFIXES = ("/v1/chat/", "/v1/embeddings", "/v1/images/", "/invoke", "/batch", "/stream")
#: Host names every server answers to (besides the address a connection came in on).
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    return next((v for k, v in scope["headers"] if k == name), None)


def host_name(value: str) -> str:
    """The name in a ``Host`` header: without port, brackets or a trailing dot, lower case."""
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


class HostCheck:
    """Refuse requests whose ``Host`` is not this server's (see the module docstring)."""

    def __init__(self, app: ASGIApp, allowed: set[str]) -> None:
        self.app = app
        self.allowed = allowed  # shared with the app's state: the server adds the name it binds to

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or "*" in self.allowed:
            return await self.app(scope, receive, send)
        raw = _header(scope, b"host")
        if raw is None:  # HTTP/1.0 without Host: no browser sends that
            return await self.app(scope, receive, send)
        name = host_name(raw.decode("latin-1"))
        server = scope.get("server")
        if name in LOCAL_NAMES or name in self.allowed or (server and name == str(server[0]).lower()):
            return await self.app(scope, receive, send)
        shown = name[:100]
        err = APIError(400, f"The Host {shown!r} is not one this server answers to. If it is this server's "
                            f"name, start it with --allowed-host {shown} (or allowed_hosts=[...]).",
                       code="invalid_host")
        await send_json(send, 400, err.body(), {"connection": "close"})


def allowed_hosts(names: Iterable[str]) -> set[str]:
    return {host_name(n) if n != "*" else n for n in names}


class APIKeyAuth:
    def __init__(self, app: ASGIApp, api_key: str, public: Container[str] = PUBLIC_PATHS) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()
        self.public = public

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.public or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        given = _header(scope, b"authorization") or b""
        if hmac.compare_digest(given, self.expected):
            return await self.app(scope, receive, send)
        message = ("Missing API key: send it as 'Authorization: Bearer <key>' (the OpenAI SDK's api_key)."
                   if not given else "Incorrect API key provided.")
        await send_json(send, 401, APIError(401, message, code="invalid_api_key").body(),
                        {"www-authenticate": "Bearer"})


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json"


class JSONBody:
    """Require JSON request bodies and read them whole, within a time and a size limit."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def _too_large(self) -> APIError:
        return APIError(413, f"The request body is larger than this server's limit of {self.max_bytes} bytes; "
                             "send less (or ask the operator to raise --max-body).", code="request_too_large")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        if not _is_json(_header(scope, b"content-type")):
            err = APIError(415, "Send the request body as JSON with 'Content-Type: application/json'.",
                           code="unsupported_media_type")
            return await send_json(send, 415, err.body())
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await send_json(send, 413, self._too_large().body(), {"connection": "close"})
        try:
            async with asyncio.timeout(self.timeout_s):
                body = await self._read(receive)
        except TimeoutError:
            err = APIError(408, f"The request body did not arrive within {self.timeout_s:g} s.", code="timeout")
            return await send_json(send, 408, err.body(), {"connection": "close"})
        except APIError as err:
            return await send_json(send, err.status, err.body(), {"connection": "close"})
        if body is None:
            log.info("%s %s: the client left before sending its whole body", scope["method"], scope["path"])
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only the disconnect is left to come

        await self.app(scope, replay, send)

    async def _read(self, receive: Any) -> bytes | None:
        parts: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                raise self._too_large()
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)


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
