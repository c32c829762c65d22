"""Server-sent events that stop generating when the client goes away.

:class:`EventStream` is a raw ASGI response. It waits for the first event before sending any
header, so a request the model rejects at once still gets a proper HTTP error status; after that
it sends events as they come. (If the first event takes longer than ``heartbeat_s``, the stream
starts anyway with SSE comments, so proxies keep the connection.) A second task waits on ``receive()`` for ``http.disconnect``: when
the client leaves, the pump is cancelled, which closes the async generator chain down to the
model (a thread-driven sync stream sees its stop flag), so the model stops being iterated.

Speed: the response start goes through the middleware stack's ``send`` (CORS adds its headers
there); the body events then go straight to the server's own ``send`` when the app left it in
the scope (``RAW_SEND``). The wrappers skipped only watch for the response start, and each one
costs a coroutine call per token.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any

from starlette.responses import Response

from plait.serve.errors import APIError, as_api_error

log = logging.getLogger("plait.serve")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

#: Scope key holding the server's own ``send`` (see :class:`EventStream`).
RAW_SEND = "plait.raw_send"

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def openai_error_event(err: APIError) -> bytes:
    """How OpenAI reports an error after a stream started: a data event with an ``error`` object."""
    return b"data: " + json.dumps(err.body()).encode() + b"\n\n"


async def send_json(send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data, "more_body": False})


class EventStream(Response):
    """ASGI response streaming the bytes of ``events`` (already formatted SSE events).

    Args:
        events: async iterator of event bytes; it is closed when the client disconnects.
        timeout_s: limit for the whole stream; past it the client gets an error event.
        error_event: formats an error raised after the stream started.
        headers: extra response headers.
        heartbeat_s: while the first event is awaited longer than this, send SSE comments.
    """

    def __init__(self, events: AsyncIterator[bytes], *, timeout_s: float | None = None,
                 error_event: Callable[[APIError], bytes] = openai_error_event,
                 headers: dict[str, str] | None = None, heartbeat_s: float = 10.0) -> None:
        self.events = events
        self.heartbeat_s = heartbeat_s
        self.start_headers = SSE_HEADERS + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        self.timeout_s = timeout_s
        self.error_event = error_event
        self.status_code = 200
        self.background = None  # FastAPI attaches background tasks here (a Response attribute)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from plait.serve.running import Work

        work = Work()  # the model's worker threads: the request ends (and frees its slot) after them
        with work.tracking():
            pump = asyncio.ensure_future(self._pump(send, scope.get(RAW_SEND, send)))
        watch = asyncio.ensure_future(self._watch(receive))
        try:
            done, _ = await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
            if pump not in done:  # the client went away: stop generating
                log.info("a client left during its stream: its request is stopped")
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
            else:
                pump.result()
                if self.background is not None:
                    await self.background()
        finally:
            watch.cancel()
            if not pump.done():
                pump.cancel()
            await _aclose(self.events)
            await work.stopped()

    @staticmethod
    async def _watch(receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    async def _pump(self, send: Send, send_body: Send) -> None:
        events = self.events
        started = False
        waiting: asyncio.Future[bytes | None] = asyncio.ensure_future(anext(events, None))
        try:
            async with asyncio.timeout(self.timeout_s):
                # A slow first event (a model loading, a long retrieval): start the stream anyway and
                # send SSE comments, which clients skip, so proxies do not drop the idle connection.
                while not (await asyncio.wait((waiting,), timeout=self.heartbeat_s))[0]:
                    if not started:
                        await send({"type": "http.response.start", "status": 200, "headers": self.start_headers})
                        started = True
                    await send_body({"type": "http.response.body", "body": b": waiting for the model\n\n",
                                     "more_body": True})
                first = waiting.result()
                if not started:
                    await send({"type": "http.response.start", "status": 200, "headers": self.start_headers})
                    started = True
                if first is not None:
                    await send_body({"type": "http.response.body", "body": first, "more_body": True})
                    async for event in events:
                        await send_body({"type": "http.response.body", "body": event, "more_body": True})
        except Exception as exc:  # reported to the client in OpenAI's format, logged here
            waiting.cancel()
            err = as_api_error(exc)
            if not started:
                await send_json(send, err.status, err.body(), err.headers)
                return
            await send_body({"type": "http.response.body", "body": self.error_event(err), "more_body": True})
        finally:
            waiting.cancel()  # a no-op once it is done; stops the model when the pump is cancelled
        await send_body({"type": "http.response.body", "body": b"", "more_body": False})


async def _aclose(events: AsyncIterator[bytes]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing after an error: the error was already reported
            log.debug("error while closing an event stream", exc_info=True)
