"""Tracing: every step of a run reported to tracers, as a tree of runs with timings.

A *tracer* is any object with the four methods of :class:`Tracer` (all optional to override).
Tracers listen inside a :func:`tracing` block, for a runnable wrapped with
``runnable.with_tracing(...)``, or everywhere while the environment variable ``PLAIT_TRACE`` is
set (``1``/``console``: the console tracer; ``verbose``: with inputs and outputs; read on each
top-level call, so it may be set at any time). Two tracers come with plait:
:class:`~plait.tracing.console.ConsoleTracer` (prints the tree) and
:class:`~plait.tracing.otel.OpenTelemetryTracer` (one OpenTelemetry span per step).

Each traced step is a :class:`Run` with a ``run_id``, the ``parent_id`` of the step that called
it, its ``name``, the ``step`` itself, timing, input and output (or error). The current run lives
in a context variable, so nesting works across threads (``batch``, dict branches) and tasks.

The one hook for compositions is :func:`traced`: a composition calls each part as
``traced(part).invoke(x)`` (or ``.stream``, ``.transform``, the async twins). When nobody
listens that is the part itself, so tracing costs nothing.

Example::

    from plait.tracing import ConsoleTracer, tracing
    with tracing(ConsoleTracer(verbose=True)):
        chain.invoke({"question": "hi"})
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from plait._lazy import lazy_exports
from plait.messages import add_chunks

if TYPE_CHECKING:
    from plait.tracing.console import ConsoleTracer
    from plait.tracing.otel import OpenTelemetryTracer
    from plait.tracing.runnable import EventCollector, Traced, astream_events


@dataclass(eq=False)
class Run:
    """One execution of one step."""

    name: str
    input: Any
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    parent_id: str | None = None
    start: float = field(default_factory=time.perf_counter)
    end: float | None = None
    output: Any = None
    error: BaseException | None = None
    depth: int = 0
    #: The Runnable that ran (None for a block opened with :func:`start_run`).
    step: Any = field(default=None, repr=False)
    #: Call options the step was given.
    options: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The tracers told about this run (and its children).
    tracers: tuple[Tracer, ...] = field(default=(), repr=False)

    @property
    def elapsed_ms(self) -> float:
        return ((self.end or time.perf_counter()) - self.start) * 1000


class Tracer:
    """Base class for callbacks. Override what you need; every method is a no-op here.

    Callbacks may come from several threads at once (``batch``, dict branches): a tracer that
    keeps state guards it with a lock.
    """

    def on_start(self, run: Run) -> None: ...

    def on_end(self, run: Run) -> None: ...

    def on_error(self, run: Run) -> None: ...

    def on_chunk(self, run: Run, chunk: Any) -> None: ...


# (tracers listening here or None for "those of PLAIT_TRACE", the current run)
_STATE: contextvars.ContextVar[tuple[tuple[Tracer, ...] | None, Run | None]] = contextvars.ContextVar(
    "plait_tracing", default=(None, None))

# PLAIT_TRACE is read on every top-level call. os.environ.get encodes the key and decodes the value
# each time (~0.6 us); the encoded mapping it wraps answers the same lookup in ~0.05 us.
try:
    _environ_get: Callable[[Any], Any] = os.environ._data.get  # type: ignore[attr-defined]
    _ENV_KEY: Any = os.environ.encodekey("PLAIT_TRACE")  # type: ignore[attr-defined]
except AttributeError:  # another Python's os.environ
    _environ_get, _ENV_KEY = os.environ.get, "PLAIT_TRACE"
_env: tuple[Any, tuple[Tracer, ...]] = (None, ())  # (raw value, its tracers): one tracer per value
_env_lock = threading.Lock()


def _env_tracers() -> tuple[Tracer, ...]:
    global _env
    raw = _environ_get(_ENV_KEY)
    seen, tracers = _env
    if raw is seen or raw == seen:
        return tracers
    with _env_lock:  # one tracer per value, also when threads see the change at once
        seen, tracers = _env
        if raw is seen or raw == seen:
            return tracers
        value = (raw if isinstance(raw, str) else os.fsdecode(raw or b"")).strip().lower()
        if value in ("", "0", "false", "no", "off"):
            tracers = ()
        else:
            from plait.tracing.console import ConsoleTracer

            tracers = (ConsoleTracer(verbose=value == "verbose"),)
        _env = (raw, tracers)
    return tracers


def listeners() -> tuple[Tracer, ...]:
    """The tracers listening here."""
    tracers = _STATE.get()[0]
    return _env_tracers() if tracers is None else tracers


def listening() -> bool:
    """True when at least one tracer listens (what a composition checks once per call)."""
    tracers = _STATE.get()[0]
    if tracers is None:  # the hot path: nothing set here, PLAIT_TRACE unchanged
        raw = _environ_get(_ENV_KEY)
        tracers = _env[1] if raw is _env[0] else _env_tracers()
    return bool(tracers)


def current_run() -> Run | None:
    return _STATE.get()[1]


@contextlib.contextmanager
def tracing(*tracers: Tracer) -> Iterator[None]:
    """Let ``tracers`` listen to everything run inside the block (besides those already listening)."""
    token = _STATE.set((listeners() + tracers, current_run()))
    try:
        yield
    finally:
        _STATE.reset(token)


def step_name(step: Any) -> str:
    get = getattr(step, "get_name", None)
    return get() if get else getattr(step, "name", None) or type(step).__name__


def tag_error(error: BaseException, name: str) -> None:
    """Record on an exception the name of the innermost step that raised it."""
    if getattr(error, "plait_step", None) is None:
        try:
            error.plait_step = name  # type: ignore[attr-defined]
            error.add_note(f"(raised in plait step '{name}')")
        except (AttributeError, TypeError):  # exceptions with __slots__
            pass


# --- the life of a run -------------------------------------------------------------------------
def _new_run(name: str, input: Any, step: Any, extra: tuple[Tracer, ...], options: dict[str, Any]) -> Run:
    """A run under the current one, told to the tracers listening now (plus ``extra``)."""
    tracers, parent = _STATE.get()
    if tracers is None:
        tracers = _env_tracers()
    return Run(name=name, input=input, parent_id=parent.run_id if parent else None,
               depth=parent.depth + 1 if parent else 0, step=step, options=options, tracers=tracers + extra)


def _begin(run: Run) -> None:
    run.start = time.perf_counter()
    for t in run.tracers:
        t.on_start(run)


def _finish(run: Run, error: BaseException | None = None) -> None:
    run.end = time.perf_counter()
    if error is None:
        for t in run.tracers:
            t.on_end(run)
        return
    run.error = error
    tag_error(error, run.name)
    for t in run.tracers:
        t.on_error(run)


@contextlib.contextmanager
def _entered(run: Run) -> Iterator[Run]:
    """Open ``run``, make it the current run inside the block, and close it on exit (error or not)."""
    _begin(run)
    token = _STATE.set((run.tracers, run))
    try:
        yield run
    except BaseException as e:
        _STATE.reset(token)
        _finish(run, e)
        raise
    _STATE.reset(token)
    _finish(run)


def start_run(name: str, input: Any) -> contextlib.AbstractContextManager[Run]:
    """A block that is one run under the current one (for a step made of plain code, not parts).

    Set ``run.output`` inside the block; an exception marks the run as failed and propagates.
    """
    return _entered(_new_run(name, input, None, (), {}))


class _Streamed:
    """One streamed run's bookkeeping, shared by :func:`_iter_run` and :func:`_aiter_run`."""

    def __init__(self, run: Run) -> None:
        self.run, self.total = run, None
        self.close: Callable[[], Any] = lambda: None

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """Make the run the current one inside the block."""
        token = _STATE.set((self.run.tracers, self.run))
        try:
            yield
        finally:
            _STATE.reset(token)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Open the run; close it with the summed chunks, an error, or what was streamed so far."""
        _begin(self.run)
        try:
            yield
        except GeneratorExit:  # the consumer stopped early: the run ends with what it streamed
            self.close()
            self.done()
            raise
        except BaseException as e:
            _finish(self.run, e)
            raise
        self.done()

    def seen(self, chunk: Any) -> Any:
        for t in self.run.tracers:
            t.on_chunk(self.run, chunk)
        self.total = add_chunks(self.total, chunk)
        return chunk

    def done(self) -> None:
        self.run.output = self.total
        _finish(self.run)


_DONE = object()


def _iter_run(run: Run, make: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    """Trace a stream: one run, a chunk callback per chunk, the summed chunks as its output.

    The run is the current one only while the step computes its next chunk, because the
    generators of a streamed chain interleave in the caller's context.
    """
    s = _Streamed(run)
    with s.running():
        with s.current():
            it = make()
        s.close = getattr(it, "close", s.close)
        while True:
            with s.current():
                chunk = next(it, _DONE)
            if chunk is _DONE:
                return
            yield s.seen(chunk)


async def _aiter_run(run: Run, make: Callable[[], AsyncIterator[Any]]) -> AsyncIterator[Any]:
    s = _Streamed(run)
    with s.running():
        with s.current():
            it = make().__aiter__()
        while True:
            with s.current():
                chunk = await anext(it, _DONE)
            if chunk is _DONE:
                return
            yield s.seen(chunk)


# --- the hook ----------------------------------------------------------------------------------
class Span:
    """A step seen through tracing: each call is one run under the current run.

    It has the calling methods of a Runnable (``invoke``, ``ainvoke``, ``stream``, ``astream``,
    ``transform``, ``atransform``). The parent and the tracers are those of the moment of the call,
    also for streams, whose run opens when the first chunk is asked for.
    """

    __slots__ = ("step", "extra")

    def __init__(self, step: Any, extra: tuple[Tracer, ...] = ()) -> None:
        self.step = step
        self.extra = extra

    def get_name(self) -> str:
        return step_name(self.step)

    def _run(self, input: Any, options: dict[str, Any]) -> Run:
        return _new_run(step_name(self.step), input, self.step, self.extra, options)

    def invoke(self, input: Any, **options: Any) -> Any:
        with _entered(self._run(input, options)) as run:
            run.output = self.step.invoke(input, **options)
        return run.output

    async def ainvoke(self, input: Any, **options: Any) -> Any:
        with _entered(self._run(input, options)) as run:
            run.output = await self.step.ainvoke(input, **options)
        return run.output

    def stream(self, input: Any, **options: Any) -> Iterator[Any]:
        return _iter_run(self._run(input, options), lambda: self.step.stream(input, **options))

    def astream(self, input: Any, **options: Any) -> AsyncIterator[Any]:
        return _aiter_run(self._run(input, options), lambda: self.step.astream(input, **options))

    def transform(self, inputs: Iterator[Any], **options: Any) -> Iterator[Any]:
        return _iter_run(self._run(None, options), lambda: self.step.transform(inputs, **options))

    def atransform(self, inputs: AsyncIterator[Any], **options: Any) -> AsyncIterator[Any]:
        return _aiter_run(self._run(None, options), lambda: self.step.atransform(inputs, **options))


def traced(step: Any) -> Any:
    """The hook: ``step`` as a composition should call it (itself when no tracer listens)."""
    return Span(step) if listening() else step


_LAZY = {"ConsoleTracer": "plait.tracing.console", "EventCollector": "plait.tracing.runnable",
         "Traced": "plait.tracing.runnable", "astream_events": "plait.tracing.runnable",
         "OpenTelemetryTracer": "plait.tracing.otel"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = ["ConsoleTracer", "EventCollector", "OpenTelemetryTracer", "Run", "Span", "Traced", "Tracer",
           "astream_events", "current_run", "listeners", "listening", "start_run", "tag_error", "traced",
           "tracing"]
