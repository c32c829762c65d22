"""Tracing: callbacks for every step of a run, an async event stream, and a console tracer.

A *tracer* is any object with the four methods of :class:`Tracer` (all optional to override).
Tracers are active inside a :func:`tracing` block, for a runnable wrapped with
``runnable.with_tracing(...)``, or everywhere when the environment variable ``PLAIT_TRACE`` is
set (``1``/``console``: the console tracer; ``verbose``: with inputs and outputs). When no
tracer is active, compositions call their steps directly and tracing costs nothing.

Each traced step is a :class:`Run` with a ``run_id``, the ``parent_id`` of the step that called
it, its ``name``, timing, input and output (or error). The current run lives in a context
variable, so nesting works across threads (``batch``, parallel branches) and asyncio tasks.

Example::

    from plait.tracing import ConsoleTracer, tracing
    with tracing(ConsoleTracer(verbose=True)):
        chain.invoke({"question": "hi"})
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from plait.runnable import Runnable


@dataclass
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

    @property
    def elapsed_ms(self) -> float:
        return ((self.end or time.perf_counter()) - self.start) * 1000


class Tracer:
    """Base class for callbacks. Override what you need; every method is a no-op here."""

    def on_start(self, run: Run) -> None: ...

    def on_end(self, run: Run) -> None: ...

    def on_error(self, run: Run) -> None: ...

    def on_chunk(self, run: Run, chunk: Any) -> None: ...


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConsoleTracer(Tracer):
    """Prints the tree of steps of each top-level run with timings (and inputs/outputs if verbose)."""

    def __init__(self, verbose: bool = False, file: TextIO | None = None) -> None:
        self.verbose = verbose
        self.file = file
        self._runs: dict[str, list[Run]] = {}

    def on_start(self, run: Run) -> None:
        root = run.run_id if run.parent_id is None else None
        if root:
            self._runs[root] = []

    def _finish(self, run: Run) -> None:
        for runs in self._runs.values():
            if run.parent_id is not None:
                runs.append(run)
                break
        if run.parent_id is None:
            children = self._runs.pop(run.run_id, [])
            self._print_tree(run, children)

    on_end = _finish
    on_error = _finish

    def _print_tree(self, root: Run, runs: list[Run]) -> None:
        out = self.file or sys.stderr
        by_parent: dict[str | None, list[Run]] = {}
        for r in runs:
            by_parent.setdefault(r.parent_id, []).append(r)

        def show(r: Run, indent: int) -> None:
            status = "error: " + _short(r.error, 200) if r.error is not None else "ok"
            print(f"{'  ' * indent}[{r.name}] {r.elapsed_ms:.2f} ms {status}", file=out)
            if self.verbose:
                print(f"{'  ' * indent}  in:  {_short(r.input)}", file=out)
                if r.error is None:
                    print(f"{'  ' * indent}  out: {_short(r.output)}", file=out)
            for child in sorted(by_parent.get(r.run_id, []), key=lambda c: c.start):
                show(child, indent + 1)

        show(root, 0)


def _from_env() -> tuple[Tracer, ...]:
    value = os.environ.get("PLAIT_TRACE", "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return ()
    return (ConsoleTracer(verbose=value == "verbose"),)


_TRACERS: contextvars.ContextVar[tuple[Tracer, ...]] = contextvars.ContextVar("plait_tracers", default=_from_env())  # noqa: B039 (a tuple, immutable)
_CURRENT: contextvars.ContextVar[Run | None] = contextvars.ContextVar("plait_current_run", default=None)


def active() -> bool:
    """True when at least one tracer is listening (the fast-path check for compositions)."""
    return bool(_TRACERS.get())


@contextlib.contextmanager
def tracing(*tracers: Tracer) -> Iterator[None]:
    """Activate tracers for everything run inside the block (in addition to those already active)."""
    token = _TRACERS.set(_TRACERS.get() + tracers)
    try:
        yield
    finally:
        _TRACERS.reset(token)


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


def _open(name: str, input: Any, parent: Run | None) -> Run:
    run = Run(name=name, input=input, parent_id=parent.run_id if parent else None,
              depth=parent.depth + 1 if parent else 0)
    for t in _TRACERS.get():
        t.on_start(run)
    return run


def _close(run: Run, error: BaseException | None = None) -> None:
    run.end = time.perf_counter()
    if error is not None:
        run.error = error
        tag_error(error, run.name)
        for t in _TRACERS.get():
            t.on_error(run)
    else:
        for t in _TRACERS.get():
            t.on_end(run)


def current_run() -> Run | None:
    return _CURRENT.get()


@contextlib.contextmanager
def start_run(name: str, input: Any) -> Iterator[Run]:
    """Open a run under the current one, notify tracers, and close it on exit (error or not)."""
    run = _open(name, input, _CURRENT.get())
    token = _CURRENT.set(run)
    try:
        yield run
    except BaseException as e:
        _CURRENT.reset(token)
        _close(run, e)
        raise
    _CURRENT.reset(token)
    _close(run)


def chunk(run: Run, value: Any) -> None:
    for t in _TRACERS.get():
        t.on_chunk(run, value)


def invoke_traced(step: Runnable, input: Any, **kwargs: Any) -> Any:
    with start_run(step_name(step), input) as run:
        run.output = step.invoke(input, **kwargs)
    return run.output


async def ainvoke_traced(step: Runnable, input: Any, **kwargs: Any) -> Any:
    with start_run(step_name(step), input) as run:
        run.output = await step.ainvoke(input, **kwargs)
    return run.output


def iter_traced(name: str, input: Any, make: Callable[[], Iterator[Any]], parent: Run | None) -> Iterator[Any]:
    """Trace a streaming step: one run, a chunk event per chunk, the summed output at the end.

    The parent is passed explicitly, and the current run is set only while the step computes its
    next chunk, because generators of a streamed chain interleave in the caller's context.
    """
    from plait.runnable import add_chunks

    run = _open(name, input, parent)
    total = None
    try:
        token = _CURRENT.set(run)
        try:
            it = make()
        finally:
            _CURRENT.reset(token)
        while True:
            token = _CURRENT.set(run)
            try:
                c = next(it)
            except StopIteration:
                break
            finally:
                _CURRENT.reset(token)
            chunk(run, c)
            total = add_chunks(total, c)
            yield c
    except BaseException as e:
        if not isinstance(e, GeneratorExit):
            _close(run, e)
        raise
    run.output = total
    _close(run)


async def aiter_traced(name: str, input: Any, make: Callable[[], AsyncIterator[Any]],
                       parent: Run | None) -> AsyncIterator[Any]:
    from plait.runnable import add_chunks

    run = _open(name, input, parent)
    total = None
    try:
        token = _CURRENT.set(run)
        try:
            it = make().__aiter__()
        finally:
            _CURRENT.reset(token)
        while True:
            token = _CURRENT.set(run)
            try:
                c = await it.__anext__()
            except StopAsyncIteration:
                break
            finally:
                _CURRENT.reset(token)
            chunk(run, c)
            total = add_chunks(total, c)
            yield c
    except BaseException as e:
        if not isinstance(e, GeneratorExit):
            _close(run, e)
        raise
    run.output = total
    _close(run)


class EventCollector(Tracer):
    """Turns callbacks into event dicts (the shape ``Runnable.astream_events`` yields)."""

    def __init__(self, emit: Callable[[dict[str, Any]], None]) -> None:
        self.emit = emit

    def _event(self, kind: str, run: Run, data: dict[str, Any]) -> None:
        self.emit({"event": kind, "name": run.name, "run_id": run.run_id,
                   "parent_run_id": run.parent_id, "elapsed_ms": run.elapsed_ms, "data": data})

    def on_start(self, run: Run) -> None:
        self._event("start", run, {"input": run.input})

    def on_end(self, run: Run) -> None:
        self._event("end", run, {"output": run.output})

    def on_error(self, run: Run) -> None:
        self._event("error", run, {"error": run.error})

    def on_chunk(self, run: Run, chunk: Any) -> None:
        self._event("chunk", run, {"chunk": chunk})
