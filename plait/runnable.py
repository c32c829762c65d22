"""The Runnable protocol, coercion of functions and dicts into steps, ``Lambda`` and ``Passthrough``.

Contract: a component subclasses :class:`Runnable` and implements ``invoke(input, **options)``.
Everything else has a correct default:

- ``ainvoke`` runs ``invoke`` in a worker thread;
- ``stream`` yields the one ``invoke`` result; ``astream`` yields chunks of ``stream`` if the
  class overrides it, else the ``ainvoke`` result;
- ``transform`` / ``atransform`` (a stream of input chunks in, output chunks out) add the input
  chunks up and then stream; a step that can work chunk by chunk (a string parser) overrides them;
- ``batch`` / ``abatch`` run many inputs with ``max_concurrency`` and ``return_exceptions``;
- ``warm_up`` loads lazy state ahead of the first call; a step made of other steps lists them
  in ``substeps()`` and the default forwards ``warm_up`` to them.

Override ``stream``/``ainvoke``/``astream`` only where a component really streams or awaits.
Options are keyword arguments of the call. A step passes on only the options it knows: an unknown
one raises (a composition takes none: bind options to the step that uses them, ``step.bind(k=v)``).

Composition: ``a | b`` (also with plain functions and dicts on either side) is a sequence, a dict
a :class:`~plait.compose.Parallel`; ``.assign()``, ``.bind()``, ``.with_retry()``,
``.with_fallbacks()``, ``.with_tracing()``. The steps made of several steps live in
:mod:`plait.compose`, the wrappers of one step in :mod:`plait.wrappers`, tracing in :mod:`plait.tracing`,
the thread and event-loop hand-overs in :mod:`plait._bridge`.

Example::

    from plait import Lambda
    chain = Lambda(lambda x: x + 1) | (lambda x: x * 2) | {"double": lambda x: x, "neg": lambda x: -x}
    chain.invoke(1)  # {"double": 4, "neg": -4}
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from plait import _bridge, tracing
from plait._lazy import lazy_exports
from plait.messages import add_chunks

if TYPE_CHECKING:
    from plait.compose import Assign

In = TypeVar("In")
Out = TypeVar("Out")


def _overrides(obj: Any, method: str) -> bool:
    return getattr(type(obj), method) is not getattr(Runnable, method)


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

    def substeps(self) -> tuple[Runnable[Any, Any], ...]:
        """The steps this one is made of (none for a leaf)."""
        return ()

    def warm_up(self) -> None:
        """Load what the first call would load (weights, connections), so that call is fast.

        The default warms up the substeps; components with lazy state override it (and should
        not mind being warmed up twice).
        """
        for part in self.substeps():
            part.warm_up()

    # --- the protocol ---------------------------------------------------------------------------
    def invoke(self, input: In, **options: Any) -> Out:
        raise NotImplementedError(f"{type(self).__name__} must implement invoke()")

    async def ainvoke(self, input: In, **options: Any) -> Out:
        return await asyncio.to_thread(self.invoke, input, **options)

    def stream(self, input: In, **options: Any) -> Iterator[Out]:
        if _overrides(self, "astream") and not _overrides(self, "invoke"):
            yield from _bridge.aiter_sync(self.astream(input, **options))
            return
        yield self.invoke(input, **options)

    async def astream(self, input: In, **options: Any) -> AsyncIterator[Out]:
        if _overrides(self, "stream"):
            async for chunk in _bridge.iter_in_thread(lambda: self.stream(input, **options)):
                yield chunk
            return
        yield await self.ainvoke(input, **options)

    def transform(self, inputs: Iterator[In], **options: Any) -> Iterator[Out]:
        total: Any = None
        for chunk in inputs:
            total = add_chunks(total, chunk)
        yield from self.stream(total, **options)

    async def atransform(self, inputs: AsyncIterator[In], **options: Any) -> AsyncIterator[Out]:
        total: Any = None
        async for chunk in inputs:
            total = add_chunks(total, chunk)
        async for out in self.astream(total, **options):
            yield out

    def batch(self, inputs: Sequence[In], *, max_concurrency: int | None = None,
              return_exceptions: bool = False, **options: Any) -> list[Any]:
        inputs = list(inputs)

        def one(x: In) -> Any:
            try:
                return self.invoke(x, **options)
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
                     return_exceptions: bool = False, **options: Any) -> list[Any]:
        sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None

        async def one(x: In) -> Any:
            try:
                if sem is None:
                    return await self.ainvoke(x, **options)
                async with sem:
                    return await self.ainvoke(x, **options)
            except Exception as e:
                if return_exceptions:
                    return e
                raise

        return list(await asyncio.gather(*(one(x) for x in inputs)))

    def astream_events(self, input: In, **options: Any) -> AsyncIterator[dict[str, Any]]:
        """Stream the run as events: ``start``/``end``/``error``/``chunk`` of every traced step.

        See :func:`plait.tracing.runnable.astream_events`.
        """
        return tracing.astream_events(self, input, **options)

    # --- composition ----------------------------------------------------------------------------
    def __or__(self, other: Any) -> Runnable[In, Any]:
        from plait.compose import Sequence_

        return Sequence_(self, coerce(other))

    def __ror__(self, other: Any) -> Runnable[Any, Out]:
        from plait.compose import Sequence_

        return Sequence_(coerce(other), self)

    def pipe(self, *others: Any) -> Runnable[In, Any]:
        from plait.compose import Sequence_

        return Sequence_(self, *(coerce(o) for o in others))

    def assign(self, **steps: Any) -> Runnable[In, dict[str, Any]]:
        """Run this step, then add keys computed from its (dict) output."""
        from plait.compose import Assign

        return self | Assign(**steps)

    def bind(self, **options: Any) -> Runnable[In, Out]:
        """Fix options passed to every call (e.g. ``model.bind(stop=["\\n"])``)."""
        from plait.wrappers import Bound

        return Bound(self, options)

    def with_retry(self, *, retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
                   attempts: int = 3, backoff: float = 0.5, max_backoff: float = 20.0,
                   jitter: bool = True) -> Runnable[In, Out]:
        from plait.wrappers import Retry

        return Retry(self, retry_on=retry_on, attempts=attempts, backoff=backoff,
                     max_backoff=max_backoff, jitter=jitter)

    def with_fallbacks(self, fallbacks: Iterable[Any], *,
                       exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,)) -> Runnable[In, Out]:
        from plait.wrappers import Fallbacks

        return Fallbacks(self, [coerce(f) for f in fallbacks], exceptions_to_handle=exceptions_to_handle)

    def with_tracing(self, *tracers: tracing.Tracer, verbose: bool = False) -> Runnable[In, Out]:
        """Trace every run of this step; with no tracer given, print the tree to stderr."""
        from plait.tracing.console import ConsoleTracer
        from plait.tracing.runnable import Traced

        return Traced(self, tracers or (ConsoleTracer(verbose=verbose),))


def coerce(thing: Any) -> Runnable[Any, Any]:
    """Turn a Runnable, dict of steps, or function into a Runnable."""
    if isinstance(thing, Runnable):
        return thing
    if isinstance(thing, Mapping):
        from plait.compose import Parallel

        return Parallel(thing)
    if callable(thing):
        return Lambda(thing)
    raise TypeError(
        f"Cannot use a {type(thing).__name__} as a chain step: expected a Runnable, a function or a dict of steps"
    )


def options_error(step: Runnable[Any, Any], options: Mapping[str, Any]) -> TypeError:
    """The error for call options a step cannot pass on."""
    names = sorted(options)
    return TypeError(f"{step.get_name()} takes no call options (got {', '.join(names)}): bind them to the "
                     f"step that uses them, e.g. step.bind({names[0]}=...)")


class Lambda(Runnable[Any, Any]):
    """Wraps a function as a step: sync, ``async def``, or a generator function.

    A generator function is a stream transform: it receives an iterator of input chunks and yields
    output chunks (``def upper(chunks): for c in chunks: yield c.upper()``). An async generator
    function does the same with an async iterator. A function that returns a Runnable has it run
    on the same input (routing). Call options are passed to the function as keyword arguments.
    """

    def __init__(self, func: Callable[..., Any], name: str | None = None) -> None:
        if not callable(func):
            raise TypeError(f"Lambda needs a callable, got {type(func).__name__}")
        self.func = func
        self.name = name or getattr(func, "__name__", None) or "Lambda"
        if self.name == "<lambda>":
            self.name = "lambda"
        self._is_async = inspect.iscoroutinefunction(func)
        self._is_gen = inspect.isgeneratorfunction(func)
        self._is_agen = inspect.isasyncgenfunction(func)

    def __repr__(self) -> str:
        return f"Lambda({self.name})"

    def invoke(self, input: Any, **options: Any) -> Any:
        if self._is_gen:
            total = None
            for c in self.func(iter([input]), **options):
                total = add_chunks(total, c)
            return total
        if self._is_async or self._is_agen:
            return _bridge.run_coroutine(self.ainvoke(input, **options))
        out = self.func(input, **options)
        if isinstance(out, Runnable):
            return tracing.traced(out).invoke(input)
        return out

    async def ainvoke(self, input: Any, **options: Any) -> Any:
        if self._is_agen:
            total = None
            async for c in self.func(_bridge.single(input), **options):
                total = add_chunks(total, c)
            return total
        if not self._is_async:
            return await super().ainvoke(input, **options)
        out = await self.func(input, **options)
        if isinstance(out, Runnable):
            return await tracing.traced(out).ainvoke(input)
        return out

    def stream(self, input: Any, **options: Any) -> Iterator[Any]:
        if self._is_gen:
            yield from self.func(iter([input]), **options)
        elif self._is_agen:
            yield from _bridge.aiter_sync(self.astream(input, **options))
        else:
            yield self.invoke(input, **options)

    def transform(self, inputs: Iterator[Any], **options: Any) -> Iterator[Any]:
        if self._is_gen:
            yield from self.func(inputs, **options)
        else:
            yield from super().transform(inputs, **options)

    async def astream(self, input: Any, **options: Any) -> AsyncIterator[Any]:
        async for c in self.atransform(_bridge.single(input), **options):
            yield c

    async def atransform(self, inputs: AsyncIterator[Any], **options: Any) -> AsyncIterator[Any]:
        if self._is_agen:
            chunks = self.func(inputs, **options)
        elif self._is_gen:  # the sync generator runs in a thread, fed the async chunks as they come
            chunks = _bridge.transform_in_thread(inputs, lambda it: self.func(it, **options))
        else:
            total = None
            async for c in inputs:
                total = add_chunks(total, c)
            chunks = _bridge.single(await self.ainvoke(total, **options))
        async for c in chunks:
            yield c


class Passthrough(Runnable[Any, Any]):
    """Returns its input unchanged (and streams it chunk by chunk). It takes no options."""

    io_bound = False

    def invoke(self, input: Any, **options: Any) -> Any:
        if options:
            raise options_error(self, options)
        return input

    async def ainvoke(self, input: Any, **options: Any) -> Any:
        return self.invoke(input, **options)

    def transform(self, inputs: Iterator[Any], **options: Any) -> Iterator[Any]:
        if options:
            raise options_error(self, options)
        yield from inputs

    async def atransform(self, inputs: AsyncIterator[Any], **options: Any) -> AsyncIterator[Any]:
        if options:
            raise options_error(self, options)
        async for c in inputs:
            yield c

    @staticmethod
    def assign(**steps: Any) -> Assign:  # type: ignore[override]
        """``Passthrough.assign(k=step)``: the input dict plus ``k`` computed from it."""
        from plait.compose import Assign

        return Assign(**steps)


# Names that lived here before the split, found where they live now.
_MOVED = {"RunnableSequence": "plait.compose", "Sequence_": "plait.compose", "Composite": "plait.compose",
          "Parallel": "plait.compose", "Assign": "plait.compose", "Branch": "plait.compose",
          "Bound": "plait.wrappers", "Retry": "plait.wrappers", "Fallbacks": "plait.wrappers",
          "_Wrapper": "plait.wrappers", "Traced": "plait.tracing.runnable"}


__getattr__, _ = lazy_exports(__name__, _MOVED, globals())
