"""The Runnable protocol and its composition.

Contract: a component subclasses :class:`Runnable` and implements ``invoke(input, **options)``.
Everything else has a correct default:

- ``ainvoke`` runs ``invoke`` in a worker thread;
- ``stream`` yields the one ``invoke`` result; ``astream`` yields chunks of ``stream`` if the
  class overrides it, else the ``ainvoke`` result;
- ``transform`` / ``atransform`` (a stream of input chunks in, output chunks out) add the input
  chunks up and then stream; a step that can work chunk by chunk (a string parser) overrides them;
- ``batch`` / ``abatch`` run many inputs with ``max_concurrency`` and ``return_exceptions``.

Override ``stream``/``ainvoke``/``astream`` only where a component really streams or awaits.
Composition: ``a | b`` (also with plain functions and dicts on either side), a dict is a
:class:`Parallel`, ``Lambda``, ``Passthrough``, ``Assign``, ``Branch``, ``.bind()``,
``.with_retry()``, ``.with_fallbacks()``, ``.with_tracing()``.

Example::

    from plait import Lambda
    chain = Lambda(lambda x: x + 1) | (lambda x: x * 2) | {"double": lambda x: x, "neg": lambda x: -x}
    chain.invoke(1)  # {"double": 4, "neg": -4}
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import queue
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from plait import tracing

In = TypeVar("In")
Out = TypeVar("Out")

_DONE = object()


def add_chunks(total: Any, chunk: Any) -> Any:
    """Add stream chunks up: strings and chunk types by ``+``, dicts key by key, else the last wins."""
    if total is None:
        return chunk
    if isinstance(total, dict) and isinstance(chunk, dict):
        merged = dict(total)
        for key, value in chunk.items():
            merged[key] = add_chunks(merged.get(key), value)
        return merged
    if isinstance(total, str) and isinstance(chunk, str):
        return total + chunk
    if hasattr(total, "__add__") and not isinstance(total, (int, float, list, tuple, bool)):
        try:
            return total + chunk
        except TypeError:
            return chunk
    return chunk


def _overrides(obj: Any, method: str) -> bool:
    return getattr(type(obj), method) is not getattr(Runnable, method)


def _run_coroutine(coro: Awaitable[Any]) -> Any:
    """Run a coroutine from sync code, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    ctx = contextvars.copy_context()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(ctx.run, asyncio.run, coro).result()  # type: ignore[arg-type]


def _iter_in_thread(make: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
    """Drive a sync iterator in a worker thread and hand its items to the event loop as they come."""

    async def gen() -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        ctx = contextvars.copy_context()

        def work() -> None:
            try:
                for item in make():
                    loop.call_soon_threadsafe(q.put_nowait, (True, item))
                    if stop.is_set():
                        break
                loop.call_soon_threadsafe(q.put_nowait, (True, _DONE))
            except BaseException as e:  # handed to the consumer, re-raised there
                loop.call_soon_threadsafe(q.put_nowait, (False, e))

        thread = threading.Thread(target=ctx.run, args=(work,), daemon=True)
        thread.start()
        try:
            while True:
                ok, item = await q.get()
                if not ok:
                    raise item
                if item is _DONE:
                    return
                yield item
        finally:
            stop.set()

    return gen()


def _aiter_sync(agen: AsyncIterator[Any]) -> Iterator[Any]:
    """Iterate an async iterator from sync code (used when only the async stream exists)."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.close()


class Runnable(Generic[In, Out]):
    """A step that turns an input into an output. Subclasses implement :meth:`invoke`."""

    name: str | None = None
    #: Whether the step may wait on I/O (or release the GIL), so that running it in threads helps.
    #: Pure-CPU steps (prompts, parsers) set False: ``batch`` and dict branches then run them in a
    #: plain loop, which is faster than a thread pool for work that holds the GIL.
    io_bound: bool = True

    def get_name(self) -> str:
        return self.name or type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # --- the protocol ---------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load what the first call would load (weights, connections), so that call is fast.

        The default does nothing; components with lazy state override it, and containers
        (sequences, dicts of steps, wrappers) forward it to their parts.
        """

    def invoke(self, input: In, **kwargs: Any) -> Out:
        raise NotImplementedError(f"{type(self).__name__} must implement invoke()")

    async def ainvoke(self, input: In, **kwargs: Any) -> Out:
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(None, lambda: ctx.run(self.invoke, input, **kwargs))

    def stream(self, input: In, **kwargs: Any) -> Iterator[Out]:
        if _overrides(self, "astream") and not _overrides(self, "invoke"):
            yield from _aiter_sync(self.astream(input, **kwargs))
            return
        yield self.invoke(input, **kwargs)

    async def astream(self, input: In, **kwargs: Any) -> AsyncIterator[Out]:
        if _overrides(self, "stream"):
            async for chunk in _iter_in_thread(lambda: self.stream(input, **kwargs)):
                yield chunk
            return
        yield await self.ainvoke(input, **kwargs)

    def transform(self, inputs: Iterator[In], **kwargs: Any) -> Iterator[Out]:
        total: Any = None
        for chunk in inputs:
            total = add_chunks(total, chunk)
        yield from self.stream(total, **kwargs)

    async def atransform(self, inputs: AsyncIterator[In], **kwargs: Any) -> AsyncIterator[Out]:
        total: Any = None
        async for chunk in inputs:
            total = add_chunks(total, chunk)
        async for out in self.astream(total, **kwargs):
            yield out

    def batch(self, inputs: Sequence[In], *, max_concurrency: int | None = None,
              return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        inputs = list(inputs)

        def one(x: In) -> Any:
            try:
                return self.invoke(x, **kwargs)
            except Exception as e:
                if return_exceptions:
                    return e
                raise

        if not inputs:
            return []
        if len(inputs) == 1 or max_concurrency == 1 or not self.io_bound:
            return [one(x) for x in inputs]
        workers = min(max_concurrency or 16, len(inputs))
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(contextvars.copy_context().run, one, x) for x in inputs]
            return [f.result() for f in futures]

    async def abatch(self, inputs: Sequence[In], *, max_concurrency: int | None = None,
                     return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None

        async def one(x: In) -> Any:
            try:
                if sem is None:
                    return await self.ainvoke(x, **kwargs)
                async with sem:
                    return await self.ainvoke(x, **kwargs)
            except Exception as e:
                if return_exceptions:
                    return e
                raise

        return list(await asyncio.gather(*(one(x) for x in inputs)))

    async def astream_events(self, input: In, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """Stream the run as events: ``start``/``end``/``error``/``chunk`` of every traced step.

        Each event is ``{"event", "name", "run_id", "parent_run_id", "elapsed_ms", "data"}``.
        The top-level run's events are included; its chunks are the output stream.
        """
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[Any] = asyncio.Queue()

        def emit(event: dict[str, Any]) -> None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                q.put_nowait(event)
            else:
                loop.call_soon_threadsafe(q.put_nowait, event)

        async def drive() -> None:
            with tracing.tracing(tracing.EventCollector(emit)):
                try:
                    async for _ in tracing.aiter_traced(self.get_name(), input,
                                                        lambda: self.astream(input, **kwargs), None):
                        pass
                except BaseException as e:
                    loop.call_soon(q.put_nowait, e)
                    return
            loop.call_soon(q.put_nowait, _DONE)

        task = asyncio.ensure_future(drive())
        try:
            while True:
                item = await q.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not task.done():
                task.cancel()

    # --- composition ----------------------------------------------------------------------------
    def __or__(self, other: Any) -> Runnable[In, Any]:
        return Sequence_(self, coerce(other))

    def __ror__(self, other: Any) -> Runnable[Any, Out]:
        return Sequence_(coerce(other), self)

    def pipe(self, *others: Any) -> Runnable[In, Any]:
        return Sequence_(self, *(coerce(o) for o in others))

    def assign(self, **steps: Any) -> Runnable[In, dict[str, Any]]:
        """Run this step, then add keys computed from its (dict) output."""
        return self | Assign(**steps)

    def bind(self, **kwargs: Any) -> Runnable[In, Out]:
        """Fix options passed to every ``invoke``/``stream`` call (e.g. ``model.bind(stop=["\\n"])``)."""
        return Bound(self, kwargs)

    def with_retry(self, *, retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
                   attempts: int = 3, backoff: float = 0.5, max_backoff: float = 20.0,
                   jitter: bool = True) -> Runnable[In, Out]:
        return Retry(self, retry_on=retry_on, attempts=attempts, backoff=backoff,
                     max_backoff=max_backoff, jitter=jitter)

    def with_fallbacks(self, fallbacks: Iterable[Any], *,
                       exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,)) -> Runnable[In, Out]:
        return Fallbacks(self, [coerce(f) for f in fallbacks], exceptions_to_handle=exceptions_to_handle)

    def with_tracing(self, *tracers: tracing.Tracer, verbose: bool = False) -> Runnable[In, Out]:
        """Trace every run of this step; with no tracer given, print the tree to stderr."""
        return Traced(self, tracers or (tracing.ConsoleTracer(verbose=verbose),))


def coerce(thing: Any) -> Runnable[Any, Any]:
    """Turn a Runnable, dict of steps, or function into a Runnable."""
    if isinstance(thing, Runnable):
        return thing
    if isinstance(thing, Mapping):
        return Parallel(thing)
    if callable(thing):
        return Lambda(thing)
    raise TypeError(
        f"Cannot use a {type(thing).__name__} as a chain step: expected a Runnable, a function or a dict of steps"
    )


def _call(step: Runnable, x: Any) -> Any:
    return tracing.invoke_traced(step, x) if tracing.active() else step.invoke(x)


async def _acall(step: Runnable, x: Any) -> Any:
    return await (tracing.ainvoke_traced(step, x) if tracing.active() else step.ainvoke(x))


class Sequence_(Runnable[Any, Any]):
    """Steps run one after another; ``a | b | c`` builds one (flattened) sequence."""

    def __init__(self, *steps: Runnable[Any, Any]) -> None:
        flat: list[Runnable[Any, Any]] = []
        for s in steps:
            flat.extend(s.steps if isinstance(s, Sequence_) else [s])  # type: ignore[has-type]
        if len(flat) < 2:
            raise ValueError("A sequence needs at least two steps")
        self.steps: list[Runnable[Any, Any]] = flat
        self.io_bound = any(s.io_bound for s in flat)

    def __repr__(self) -> str:
        return " | ".join(s.get_name() for s in self.steps)

    def get_name(self) -> str:
        return self.name or "Sequence"

    def invoke(self, input: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"A sequence takes no options (got {sorted(kwargs)}); bind them to a step with .bind()")
        if tracing.active():
            if tracing.current_run() is None:
                return tracing.invoke_traced(_Root(self), input)
            for traced in self.steps:
                input = tracing.invoke_traced(traced, input)
            return input
        step: Runnable[Any, Any] | None = None
        try:
            for step in self.steps:
                input = step.invoke(input)
        except Exception as e:
            tracing.tag_error(e, step.get_name() if step is not None else self.get_name())
            raise
        return input

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"A sequence takes no options (got {sorted(kwargs)}); bind them to a step with .bind()")
        if tracing.active() and tracing.current_run() is None:
            return await tracing.ainvoke_traced(_Root(self), input)
        step: Runnable[Any, Any] | None = None
        try:
            for step in self.steps:
                input = await _acall(step, input)
        except Exception as e:
            tracing.tag_error(e, step.get_name() if step is not None else self.get_name())
            raise
        return input

    def _pipeline(self, inputs: Iterator[Any]) -> Iterator[Any]:
        parent = tracing.current_run()
        it = inputs
        for step in self.steps:
            if tracing.active():
                it = tracing.iter_traced(step.get_name(), None, lambda s=step, i=it: s.transform(i), parent)  # type: ignore[misc]
            else:
                it = step.transform(it)
        return it

    def stream(self, input: Any, **kwargs: Any) -> Iterator[Any]:
        if tracing.active() and tracing.current_run() is None:
            yield from tracing.iter_traced(self.get_name(), input, lambda: self._pipeline(iter([input])), None)
            return
        yield from self._pipeline(iter([input]))

    def transform(self, inputs: Iterator[Any], **kwargs: Any) -> Iterator[Any]:
        yield from self._pipeline(inputs)

    def _apipeline(self, inputs: AsyncIterator[Any]) -> AsyncIterator[Any]:
        parent = tracing.current_run()
        it = inputs
        for step in self.steps:
            if tracing.active():
                it = tracing.aiter_traced(step.get_name(), None, lambda s=step, i=it: s.atransform(i), parent)  # type: ignore[misc]
            else:
                it = step.atransform(it)
        return it

    async def astream(self, input: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[Any]:
            yield input

        if tracing.active() and tracing.current_run() is None:
            gen = tracing.aiter_traced(self.get_name(), input, lambda: self._apipeline(one()), None)
        else:
            gen = self._apipeline(one())
        async for chunk in gen:
            yield chunk

    async def atransform(self, inputs: AsyncIterator[Any], **kwargs: Any) -> AsyncIterator[Any]:
        async for chunk in self._apipeline(inputs):
            yield chunk

    def batch(self, inputs: Sequence[Any], *, max_concurrency: int | None = None,
              return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        if tracing.active():  # one traced tree per input
            return super().batch(inputs, max_concurrency=max_concurrency, return_exceptions=return_exceptions)
        # Step by step over the whole batch: each step batches its way (threads or a loop).
        results: list[Any] = list(inputs)
        failed: set[int] = set()
        for step in self.steps:
            live = [i for i in range(len(results)) if i not in failed]
            outs = step.batch([results[i] for i in live], max_concurrency=max_concurrency,
                              return_exceptions=return_exceptions)
            for i, out in zip(live, outs, strict=True):
                if return_exceptions and isinstance(out, Exception):
                    tracing.tag_error(out, step.get_name())
                    failed.add(i)
                results[i] = out
        return results


class _Root(Runnable[Any, Any]):
    """Names the top-level run of a sequence when tracing starts at it."""

    def __init__(self, seq: Sequence_) -> None:
        self.seq = seq

    def get_name(self) -> str:
        return self.seq.get_name()

    def invoke(self, input: Any, **kwargs: Any) -> Any:
        return self.seq.invoke(input)

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        return await self.seq.ainvoke(input)


class Parallel(Runnable[Any, dict[str, Any]]):
    """Runs several steps on the same input concurrently; returns a dict of their outputs.

    A plain dict in a chain becomes one: ``{"context": retriever, "question": Passthrough()}``.
    """

    def __init__(self, steps: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self.steps = {k: coerce(v) for k, v in {**(steps or {}), **kwargs}.items()}
        if not self.steps:
            raise ValueError("Parallel needs at least one step")
        self.io_bound = any(s.io_bound for s in self.steps.values())

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k}: {v.get_name()}" for k, v in self.steps.items()) + "}"

    def invoke(self, input: Any, **kwargs: Any) -> dict[str, Any]:
        waiting = [k for k, s in self.steps.items() if s.io_bound]
        if len(waiting) < 2:
            return {k: _call(s, input) for k, s in self.steps.items()}
        # Branches that may wait run in threads; cheap ones run here meanwhile.
        with ThreadPoolExecutor(len(waiting)) as pool:
            futures = {k: pool.submit(contextvars.copy_context().run, _call, self.steps[k], input) for k in waiting}
            done = {k: _call(s, input) for k, s in self.steps.items() if k not in futures}
            done.update({k: f.result() for k, f in futures.items()})
        return {k: done[k] for k in self.steps}

    async def ainvoke(self, input: Any, **kwargs: Any) -> dict[str, Any]:
        values = await asyncio.gather(*(_acall(s, input) for s in self.steps.values()))
        return dict(zip(self.steps, values, strict=True))

    def stream(self, input: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yields ``{key: chunk}`` for each branch's chunks as they arrive."""
        q: queue.Queue[Any] = queue.Queue()
        parent = tracing.current_run()

        def run(key: str, step: Runnable) -> None:
            try:
                chunks = (tracing.iter_traced(step.get_name(), input, lambda: step.stream(input), parent)
                          if tracing.active() else step.stream(input))
                for c in chunks:
                    q.put((key, c))
                q.put((key, _DONE))
            except BaseException as e:
                q.put((key, e))

        threads = [threading.Thread(target=contextvars.copy_context().run, args=(run, k, s), daemon=True)
                   for k, s in self.steps.items()]
        for t in threads:
            t.start()
        remaining = len(threads)
        while remaining:
            key, item = q.get()
            if item is _DONE:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield {key: item}

    async def astream(self, input: Any, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        q: asyncio.Queue[Any] = asyncio.Queue()
        parent = tracing.current_run()

        async def run(key: str, step: Runnable) -> None:
            try:
                chunks = (tracing.aiter_traced(step.get_name(), input, lambda: step.astream(input), parent)
                          if tracing.active() else step.astream(input))
                async for c in chunks:
                    await q.put((key, c))
                await q.put((key, _DONE))
            except BaseException as e:
                await q.put((key, e))

        tasks = [asyncio.ensure_future(run(k, s)) for k, s in self.steps.items()]
        remaining = len(tasks)
        try:
            while remaining:
                key, item = await q.get()
                if item is _DONE:
                    remaining -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield {key: item}
        finally:
            for t in tasks:
                t.cancel()


class Lambda(Runnable[Any, Any]):
    """Wraps a function as a step: sync, ``async def``, or a generator function.

    A generator function is a stream transform: it receives an iterator of input chunks and yields
    output chunks (``def upper(chunks): for c in chunks: yield c.upper()``). An async generator
    function does the same with an async iterator.
    """

    def __init__(self, func: Callable[..., Any], afunc: Callable[..., Any] | None = None,
                 name: str | None = None) -> None:
        if not callable(func):
            raise TypeError(f"Lambda needs a callable, got {type(func).__name__}")
        self.func = func
        self.afunc = afunc
        self.name = name or getattr(func, "__name__", None) or "Lambda"
        if self.name == "<lambda>":
            self.name = "lambda"
        self._is_async = inspect.iscoroutinefunction(func)
        self._is_gen = inspect.isgeneratorfunction(func)
        self._is_agen = inspect.isasyncgenfunction(func)

    def __repr__(self) -> str:
        return f"Lambda({self.name})"

    def invoke(self, input: Any, **kwargs: Any) -> Any:
        if self._is_gen:
            total = None
            for c in self.func(iter([input]), **kwargs):
                total = add_chunks(total, c)
            return total
        if self._is_async or self._is_agen:
            return _run_coroutine(self.ainvoke(input, **kwargs))
        out = self.func(input, **kwargs)
        if isinstance(out, Runnable):
            return _call(out, input)
        return out

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        if self._is_agen:
            total = None

            async def one() -> AsyncIterator[Any]:
                yield input

            async for c in self.func(one(), **kwargs):
                total = add_chunks(total, c)
            return total
        if self._is_async:
            out = await self.func(input, **kwargs)
        elif self.afunc is not None:
            out = await self.afunc(input, **kwargs)
        else:
            return await super().ainvoke(input, **kwargs)
        if isinstance(out, Runnable):
            return await _acall(out, input)
        return out

    def stream(self, input: Any, **kwargs: Any) -> Iterator[Any]:
        if self._is_gen:
            yield from self.func(iter([input]), **kwargs)
        elif self._is_agen:
            yield from _aiter_sync(self.astream(input, **kwargs))
        else:
            out = self.invoke(input, **kwargs)
            yield out

    def transform(self, inputs: Iterator[Any], **kwargs: Any) -> Iterator[Any]:
        if self._is_gen:
            yield from self.func(inputs, **kwargs)
        else:
            yield from super().transform(inputs, **kwargs)

    async def astream(self, input: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[Any]:
            yield input

        async for c in self.atransform(one(), **kwargs):
            yield c

    async def atransform(self, inputs: AsyncIterator[Any], **kwargs: Any) -> AsyncIterator[Any]:
        if self._is_agen:
            async for c in self.func(inputs, **kwargs):
                yield c
        elif self._is_gen:
            # Feed the async input chunks to the sync generator (run in a thread) as they come.
            inbox: queue.Queue[Any] = queue.Queue()

            def sync_inputs() -> Iterator[Any]:
                while True:
                    ok, item = inbox.get()
                    if not ok:
                        raise item
                    if item is _DONE:
                        return
                    yield item

            async def feed() -> None:
                try:
                    async for c in inputs:
                        inbox.put((True, c))
                    inbox.put((True, _DONE))
                except BaseException as e:
                    inbox.put((False, e))

            feeder = asyncio.ensure_future(feed())
            try:
                async for c in _iter_in_thread(lambda: self.func(sync_inputs(), **kwargs)):
                    yield c
            finally:
                feeder.cancel()
        else:
            total = None
            async for c in inputs:
                total = add_chunks(total, c)
            yield await self.ainvoke(total, **kwargs)


class Passthrough(Runnable[Any, Any]):
    """Returns its input unchanged (and streams it chunk by chunk)."""

    io_bound = False

    def invoke(self, input: Any, **kwargs: Any) -> Any:
        return input

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        return input

    def transform(self, inputs: Iterator[Any], **kwargs: Any) -> Iterator[Any]:
        yield from inputs

    async def atransform(self, inputs: AsyncIterator[Any], **kwargs: Any) -> AsyncIterator[Any]:
        async for c in inputs:
            yield c

    @staticmethod
    def assign(**steps: Any) -> Assign:  # type: ignore[override]
        """``Passthrough.assign(k=step)``: the input dict plus ``k`` computed from it."""
        return Assign(**steps)


class Assign(Runnable[dict[str, Any], dict[str, Any]]):
    """Adds keys to a dict input, each computed by a step from the whole input."""

    def __init__(self, **steps: Any) -> None:
        self.parallel = Parallel(steps)
        self.io_bound = self.parallel.io_bound

    def _check(self, input: Any) -> None:
        if not isinstance(input, Mapping):
            raise TypeError(f"Assign needs a dict input, got {type(input).__name__}")

    def invoke(self, input: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self._check(input)
        return {**input, **self.parallel.invoke(input)}

    async def ainvoke(self, input: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self._check(input)
        return {**input, **(await self.parallel.ainvoke(input))}

    def stream(self, input: dict[str, Any], **kwargs: Any) -> Iterator[dict[str, Any]]:
        self._check(input)
        yield dict(input)
        yield from self.parallel.stream(input)

    async def astream(self, input: dict[str, Any], **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        self._check(input)
        yield dict(input)
        async for c in self.parallel.astream(input):
            yield c


class Branch(Runnable[Any, Any]):
    """Runs the step of the first condition that holds, else the default.

    Example: ``Branch((lambda x: x["lang"] == "fr", french), (lambda x: True, english), default=english)``.
    """

    def __init__(self, *cases: tuple[Any, Any], default: Any) -> None:
        self.cases = [(coerce(cond), coerce(step)) for cond, step in cases]
        self.default = coerce(default)

    def _pick(self, input: Any) -> Runnable:
        for cond, step in self.cases:
            if _call(cond, input):
                return step
        return self.default

    async def _apick(self, input: Any) -> Runnable:
        for cond, step in self.cases:
            if await _acall(cond, input):
                return step
        return self.default

    def invoke(self, input: Any, **kwargs: Any) -> Any:
        return _call(self._pick(input), input)

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        return await _acall(await self._apick(input), input)

    def stream(self, input: Any, **kwargs: Any) -> Iterator[Any]:
        yield from self._pick(input).stream(input)

    async def astream(self, input: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for c in (await self._apick(input)).astream(input):
            yield c


class _Wrapper(Runnable[Any, Any]):
    """Base for steps that wrap one other step."""

    def __init__(self, bound: Runnable[Any, Any]) -> None:
        self.bound = bound
        self.io_bound = bound.io_bound

    def get_name(self) -> str:
        return self.name or self.bound.get_name()

    def __getattr__(self, item: str) -> Any:  # reach the wrapped component's attributes
        if item == "bound":
            raise AttributeError(item)
        return getattr(self.bound, item)


class Bound(_Wrapper):
    """A step with some call options fixed (``model.bind(temperature=0)``)."""

    def __init__(self, bound: Runnable[Any, Any], kwargs: dict[str, Any]) -> None:
        super().__init__(bound)
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"{self.bound!r}.bind({self.kwargs})"

    def bind(self, **kwargs: Any) -> Runnable[Any, Any]:
        return Bound(self.bound, {**self.kwargs, **kwargs})

    def invoke(self, input: Any, **kwargs: Any) -> Any:
        return self.bound.invoke(input, **{**self.kwargs, **kwargs})

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        return await self.bound.ainvoke(input, **{**self.kwargs, **kwargs})

    def stream(self, input: Any, **kwargs: Any) -> Iterator[Any]:
        yield from self.bound.stream(input, **{**self.kwargs, **kwargs})

    async def astream(self, input: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for c in self.bound.astream(input, **{**self.kwargs, **kwargs}):
            yield c

    def transform(self, inputs: Iterator[Any], **kwargs: Any) -> Iterator[Any]:
        yield from self.bound.transform(inputs, **{**self.kwargs, **kwargs})

    async def atransform(self, inputs: AsyncIterator[Any], **kwargs: Any) -> AsyncIterator[Any]:
        async for c in self.bound.atransform(inputs, **{**self.kwargs, **kwargs}):
            yield c

    def batch(self, inputs: Sequence[Any], **kwargs: Any) -> list[Any]:
        opts = {k: kwargs.pop(k) for k in ("max_concurrency", "return_exceptions") if k in kwargs}
        return self.bound.batch(inputs, **opts, **{**self.kwargs, **kwargs})


class Retry(_Wrapper):
    """Retries a step on the given exceptions, with exponential backoff and full jitter.

    ``attempts`` counts all tries (3 means one call and at most two retries). A stream is retried
    only if it failed before its first chunk, so no chunk is ever delivered twice.
    """

    def __init__(self, bound: Runnable[Any, Any], *, retry_on: Any = Exception, attempts: int = 3,
                 backoff: float = 0.5, max_backoff: float = 20.0, jitter: bool = True) -> None:
        super().__init__(bound)
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.retry_on = retry_on if isinstance(retry_on, tuple) else (retry_on,)
        self.attempts, self.backoff, self.max_backoff, self.jitter = attempts, backoff, max_backoff, jitter

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return random.uniform(0, base) if self.jitter else base

    def invoke(self, input: Any, **kwargs: Any) -> Any:
        for attempt in range(1, self.attempts + 1):
            try:
                return self.bound.invoke(input, **kwargs)
            except self.retry_on:
                if attempt == self.attempts:
                    raise
                time.sleep(self.delay(attempt))
        raise AssertionError("unreachable")

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        for attempt in range(1, self.attempts + 1):
            try:
                return await self.bound.ainvoke(input, **kwargs)
            except self.retry_on:
                if attempt == self.attempts:
                    raise
                await asyncio.sleep(self.delay(attempt))
        raise AssertionError("unreachable")

    def stream(self, input: Any, **kwargs: Any) -> Iterator[Any]:
        for attempt in range(1, self.attempts + 1):
            started = False
            try:
                for c in self.bound.stream(input, **kwargs):
                    started = True
                    yield c
                return
            except self.retry_on:
                if started or attempt == self.attempts:
                    raise
                time.sleep(self.delay(attempt))

    async def astream(self, input: Any, **kwargs: Any) -> AsyncIterator[Any]:
        for attempt in range(1, self.attempts + 1):
            started = False
            try:
                async for c in self.bound.astream(input, **kwargs):
                    started = True
                    yield c
                return
            except self.retry_on:
                if started or attempt == self.attempts:
                    raise
                await asyncio.sleep(self.delay(attempt))


class Fallbacks(_Wrapper):
    """Tries the step, then each fallback in order; raises the first error if all fail."""

    def __init__(self, bound: Runnable[Any, Any], fallbacks: list[Runnable[Any, Any]], *,
                 exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,)) -> None:
        super().__init__(bound)
        self.fallbacks = fallbacks
        self.exceptions_to_handle = exceptions_to_handle

    @property
    def runnables(self) -> list[Runnable[Any, Any]]:
        return [self.bound, *self.fallbacks]

    def _fail(self, errors: list[BaseException]) -> BaseException:
        first = errors[0]
        for e in errors[1:]:
            first.add_note(f"fallback also failed: {type(e).__name__}: {e}")
        return first

    def invoke(self, input: Any, **kwargs: Any) -> Any:
        errors: list[BaseException] = []
        for r in self.runnables:
            try:
                return _call(r, input) if not kwargs else r.invoke(input, **kwargs)
            except self.exceptions_to_handle as e:
                errors.append(e)
        raise self._fail(errors)

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        errors: list[BaseException] = []
        for r in self.runnables:
            try:
                return await r.ainvoke(input, **kwargs)
            except self.exceptions_to_handle as e:
                errors.append(e)
        raise self._fail(errors)

    def stream(self, input: Any, **kwargs: Any) -> Iterator[Any]:
        errors: list[BaseException] = []
        for r in self.runnables:
            started = False
            try:
                for c in r.stream(input, **kwargs):
                    started = True
                    yield c
                return
            except self.exceptions_to_handle as e:
                if started:
                    raise
                errors.append(e)
        raise self._fail(errors)

    async def astream(self, input: Any, **kwargs: Any) -> AsyncIterator[Any]:
        errors: list[BaseException] = []
        for r in self.runnables:
            started = False
            try:
                async for c in r.astream(input, **kwargs):
                    started = True
                    yield c
                return
            except self.exceptions_to_handle as e:
                if started:
                    raise
                errors.append(e)
        raise self._fail(errors)


class Traced(_Wrapper):
    """Runs a step with tracers active (what ``.with_tracing()`` returns)."""

    def __init__(self, bound: Runnable[Any, Any], tracers: tuple[tracing.Tracer, ...]) -> None:
        super().__init__(bound)
        self.tracers = tracers

    def invoke(self, input: Any, **kwargs: Any) -> Any:
        with tracing.tracing(*self.tracers):
            return tracing.invoke_traced(self.bound, input, **kwargs)

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        with tracing.tracing(*self.tracers):
            return await tracing.ainvoke_traced(self.bound, input, **kwargs)

    def stream(self, input: Any, **kwargs: Any) -> Iterator[Any]:
        with tracing.tracing(*self.tracers):
            yield from tracing.iter_traced(self.get_name(), input, lambda: self.bound.stream(input, **kwargs),
                                           tracing.current_run())

    async def astream(self, input: Any, **kwargs: Any) -> AsyncIterator[Any]:
        with tracing.tracing(*self.tracers):
            async for c in tracing.aiter_traced(self.get_name(), input,
                                                lambda: self.bound.astream(input, **kwargs),
                                                tracing.current_run()):
                yield c


# Public name: ``Sequence`` would shadow collections.abc inside this module.
RunnableSequence = Sequence_
