"""The one bridge between threads, event loops and iterators.

A :class:`Channel` carries items from producers (worker threads or asyncio tasks) to one consumer,
which reads it with ``for`` (sync) or ``async for`` (async). Producers are functions
``work(put)`` that call ``put(item)`` for each item; their error reaches the consumer and is
raised there. When the consumer leaves early, the next ``put`` raises :class:`ConsumerLeft`, so
producers stop at their next item. Every thread/loop hand-over in plait is built on it:

- :func:`from_threads` / :func:`afrom_threads`: run ``work(put)`` in worker threads, read the
  items in sync / async code (a sync stream driven from the event loop, the branches of a dict of
  steps, an image pipeline's step callbacks);
- :func:`afrom_tasks`: run ``async work(put)`` as tasks, read the items in async code;
- :func:`transform_in_thread`: feed an async stream of chunks to a sync generator in a thread.

Plus the plain conversions: :func:`run_coroutine` (await from sync code), :func:`aiter_sync`
(iterate an async iterator from sync code) and :func:`single` (a one-item async iterator).
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Put = Callable[[Any], None]
#: A producer: puts its items, then returns (or raises).
Work = Callable[[Put], Any]
AsyncWork = Callable[[Put], Awaitable[Any]]

_ITEM, _END = 0, 1

#: When a caller sets this to a list, every worker thread started here is added to it, so the caller
#: can wait for the work it started to end (the server holds a request's slot until its threads stop).
workers: contextvars.ContextVar[list[threading.Thread] | None] = contextvars.ContextVar("plait_workers",
                                                                                          default=None)


class ConsumerLeft(BaseException):  # like GeneratorExit: a signal to stop, not a failure
    """Raised by ``put`` once the consumer has stopped reading: the producer should stop."""


class Channel:
    """Items from ``producers`` producers to one consumer; the first error ends the stream.

    Args:
        producers: how many :meth:`close` calls end the stream.
        loop: the event loop of an async consumer; ``None`` for a sync consumer.
    """

    def __init__(self, producers: int = 1, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop
        self._queue: Any = asyncio.Queue() if loop is not None else queue.SimpleQueue()
        self._open = producers
        self.left = threading.Event()  # set when the consumer stops reading

    def put(self, item: Any) -> None:
        self._send(_ITEM, item)

    def close(self, error: BaseException | None = None) -> None:
        """One producer is done (with ``error`` if it failed)."""
        self._send(_END, error)

    def _send(self, kind: int, value: Any) -> None:
        if self.left.is_set():
            raise ConsumerLeft
        if self.loop is None:
            self._queue.put((kind, value))
            return
        try:
            if _running_loop() is self.loop:
                self._queue.put_nowait((kind, value))
            else:
                self.loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError as e:  # the consumer's event loop is closed: nobody reads any more
            self.left.set()
            raise ConsumerLeft from e

    def _take(self, kind: int, value: Any) -> bool:
        """Handle one message; False when it ended a producer (raises its error, if any)."""
        if kind == _ITEM:
            return True
        if value is not None:
            raise value
        self._open -= 1
        return False

    def __iter__(self) -> Iterator[Any]:
        try:
            while self._open:
                kind, value = self._queue.get()
                if self._take(kind, value):
                    yield value
        finally:
            self.left.set()

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            while self._open:
                kind, value = await self._queue.get()
                if self._take(kind, value):
                    yield value
        finally:
            self.left.set()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _produce(channel: Channel, work: Work) -> None:
    """Run ``work(put)`` and close the channel, handing over its error."""
    try:
        work(channel.put)
    except ConsumerLeft:
        return
    except BaseException as e:  # re-raised by the consumer
        _close_quietly(channel, e)
        return
    _close_quietly(channel)


async def _aproduce(channel: Channel, work: AsyncWork) -> None:
    try:
        await work(channel.put)
    except ConsumerLeft:
        return
    except BaseException as e:  # re-raised by the consumer (a cancelled task included)
        _close_quietly(channel, e)
        return
    _close_quietly(channel)


def _close_quietly(channel: Channel, error: BaseException | None = None) -> None:
    try:
        channel.close(error)
    except ConsumerLeft:
        pass


def _start_threads(channel: Channel, works: Iterable[Work]) -> None:
    tracked = workers.get()
    for work in works:
        ctx = contextvars.copy_context()  # tracing and other context follow the work into its thread
        thread = threading.Thread(target=ctx.run, args=(_produce, channel, work), daemon=True)
        if tracked is not None:
            tracked.append(thread)
        thread.start()


def from_threads(*works: Work) -> Iterator[Any]:
    """Run each ``work(put)`` in its own thread; yield what they put, as it comes."""
    channel = Channel(len(works))
    _start_threads(channel, works)
    yield from channel


async def afrom_threads(*works: Work) -> AsyncIterator[Any]:
    """Run each ``work(put)`` in its own thread; yield what they put to the event loop, as it comes."""
    channel = Channel(len(works), asyncio.get_running_loop())
    _start_threads(channel, works)
    async for item in channel:
        yield item


async def afrom_tasks(*works: AsyncWork) -> AsyncIterator[Any]:
    """Run each ``async work(put)`` as a task; yield what they put, as it comes; cancel them on exit."""
    channel = Channel(len(works), asyncio.get_running_loop())
    tasks = [asyncio.ensure_future(_aproduce(channel, work)) for work in works]
    try:
        async for item in channel:
            yield item
    finally:
        for task in tasks:
            task.cancel()


def iter_in_thread(make: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
    """Drive a sync iterator in a worker thread and hand its items to the event loop as they come."""

    def work(put: Put) -> None:
        for item in make():
            put(item)

    return afrom_threads(work)


async def transform_in_thread(inputs: AsyncIterator[Any],
                              func: Callable[[Iterator[Any]], Iterator[Any]]) -> AsyncIterator[Any]:
    """Run a sync stream transform ``func`` in a thread, fed with the async ``inputs`` as they come."""
    inbox = Channel()  # read by the worker thread

    async def feed(put: Put) -> None:
        async for chunk in inputs:
            put(chunk)

    feeder = asyncio.ensure_future(_aproduce(inbox, feed))
    try:
        async for out in iter_in_thread(lambda: func(iter(inbox))):
            yield out
    finally:
        feeder.cancel()
        _close_quietly(inbox, ConsumerLeft())  # a thread still reading stops (if the feeder never ran)


async def single(item: Any) -> AsyncIterator[Any]:
    """An async iterator of one item (a one-chunk input stream)."""
    yield item


def run_coroutine(coro: Awaitable[Any]) -> Any:
    """Run a coroutine from sync code, also when called from inside a running event loop."""
    if _running_loop() is None:
        return asyncio.run(coro)  # type: ignore[arg-type]
    ctx = contextvars.copy_context()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(ctx.run, asyncio.run, coro).result()  # type: ignore[arg-type]


def aiter_sync(agen: AsyncIterator[Any]) -> Iterator[Any]:
    """Iterate an async iterator from sync code, on an event loop of its own."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(agen.__anext__())  # type: ignore[arg-type]
            except StopAsyncIteration:
                return
    finally:
        loop.close()
