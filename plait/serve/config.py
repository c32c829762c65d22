"""The server's settings: one dataclass, passed to :func:`plait.serve.create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServeConfig:
    """Limits, security and adaptation settings of a served app.

    Args:
        api_key: clients must send ``Authorization: Bearer <api_key>``; ``None`` turns auth off
            (``plait serve`` refuses that when binding to anything but loopback).
        max_body_bytes: larger request bodies get 413.
        timeout_s: time limit of one request (for a stream: of the whole stream); past it a
            request gets 504, a stream an error event. Generation stops at the model's next token
            (also when the client disconnects), and the request keeps its concurrency slot until
            the model's worker threads have stopped.
        max_concurrency: requests to the model routes in flight at once; one more gets 429 with
            ``Retry-After: retry_after_s``.
        heartbeat_s: while a stream waits longer than this for its first token, it starts and
            sends SSE comments (clients skip them), so proxies keep the connection open.
        cors_origins: origins allowed by CORS; empty (the default) means no CORS headers at all.
        input_key: for a chain (not a chat model) that takes a dict: the key the last user message's
            text goes under. ``None`` passes the text itself.
        history_key: for such a dict-input chain, the key that receives the earlier messages
            (a list of plait messages); ``None`` leaves history out.
        name: the model id clients use (``model=`` in requests, listed by ``/v1/models``); by
            default the chat model's ``model_name``, else ``"plait"``.
        allowed_hosts: ``Host`` names accepted besides the address a connection came in on,
            ``localhost``, ``127.0.0.1`` and ``::1`` (and the name the server was bound to);
            ``["*"]`` accepts any. Guards a key-less server against DNS rebinding.
        header_timeout_s: a connection must send a request's headers within this (else it is closed).
        body_timeout_s: a request must send its whole body within this (else 408).
        idle_timeout_s: an idle keep-alive connection is closed after this.
        max_connections: open connections at most; a new one past it closes the oldest idle one
            (or itself, when none is idle). ``None``: 1024, or less when the process may open fewer files.
    """

    api_key: str | None = None
    max_body_bytes: int = 2 * 1024 * 1024
    timeout_s: float = 300.0
    max_concurrency: int = 256
    retry_after_s: int = 1
    heartbeat_s: float = 10.0
    cors_origins: list[str] = field(default_factory=list)
    input_key: str | None = None
    history_key: str | None = None
    name: str | None = None
    allowed_hosts: list[str] = field(default_factory=list)
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    idle_timeout_s: float = 15.0
    max_connections: int | None = None
