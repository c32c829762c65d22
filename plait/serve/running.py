"""Running one request's model work so that it stops when the client leaves or time runs out.

A request's work runs as an asyncio task. When the client disconnects or ``timeout_s`` passes,
the task is cancelled: the cancellation unwinds the chain of async streams down to the bridge
that feeds it from a worker thread, and that thread stops at its next item (a local model: at
its next token; see :mod:`plait._bridge`). Every worker thread the work starts is recorded
(:data:`plait._bridge.workers`), and :meth:`Work.stopped` waits for them to end, so a request keeps
its concurrency slot until its model has really stopped: ``--max-concurrency`` caps the CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from plait import _bridge
from plait.serve.errors import ClientLeft

log = logging.getLogger("plait.serve")
T = TypeVar("T")


class Work:
    """The worker threads started on behalf of one request."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        """Record the threads started (through :mod:`plait._bridge`) while this block runs,
        and by the tasks created in it."""
        token = _bridge.workers.set(self.threads)
        try:
            yield
        finally:
            _bridge.workers.reset(token)

    async def stopped(self) -> None:
        """Wait until every recorded thread has ended (polled: no executor thread is held for it)."""
        pause = 0.002
        while any(t.is_alive() for t in self.threads):
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)


async def until_disconnect(receive: Callable[[], Awaitable[Any]]) -> None:
    """Return when the client disconnects (the request body has been read already)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def run_request(make: Callable[[], Awaitable[T]], receive: Callable[[], Awaitable[Any]],
                      timeout_s: float) -> T:
    """Run ``make()`` as the request's work; stop it when the client leaves or at ``timeout_s``.

    Raises :class:`ClientLeft` or ``TimeoutError`` after the work has stopped, threads included.
    """
    work = Work()
    with work.tracking():
        task = asyncio.ensure_future(make())
    watch = asyncio.ensure_future(until_disconnect(receive))
    try:
        done, _ = await asyncio.wait((task, watch), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        if watch in done:
            log.info("a client left before its answer was ready: its request is stopped")
            raise ClientLeft
        raise TimeoutError
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await work.stopped()
