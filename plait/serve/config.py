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
            request gets 504, a stream an error event. (A sync model call cannot be interrupted:
            it finishes in its worker thread, but the client is answered at the limit.)
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
