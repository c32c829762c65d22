"""The Runnable side of tracing: :class:`Traced` (what ``.with_tracing()`` returns) and
:func:`astream_events` (a run as a stream of event dicts).

Example::

    async for event in chain.astream_events({"question": "hi"}):
        print(event["event"], event["name"])
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from plait import _bridge
from plait.runnable import Runnable
from plait.tracing import Run, Span, Tracer, tracing
from plait.wrappers import _Wrapper


class Traced(_Wrapper):
    """Runs a step with more tracers listening, as one run (the top of its tree when nothing encloses it)."""

    def __init__(self, bound: Runnable[Any, Any], tracers: tuple[Tracer, ...]) -> None:
        super().__init__(bound)
        self.tracers = tuple(tracers)

    def _span(self) -> Span:
        return Span(self.bound, self.tracers)

    def invoke(self, input: Any, **options: Any) -> Any:
        return self._span().invoke(input, **options)

    async def ainvoke(self, input: Any, **options: Any) -> Any:
        return await self._span().ainvoke(input, **options)

    def stream(self, input: Any, **options: Any) -> Iterator[Any]:  # type: ignore[override]
        return self._span().stream(input, **options)

    def astream(self, input: Any, **options: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        return self._span().astream(input, **options)

    def transform(self, inputs: Iterator[Any], **options: Any) -> Iterator[Any]:  # type: ignore[override]
        return self._span().transform(inputs, **options)

    def atransform(self, inputs: AsyncIterator[Any], **options: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        return self._span().atransform(inputs, **options)


class EventCollector(Tracer):
    """Turns callbacks into event dicts (the shape :func:`astream_events` yields)."""

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


async def astream_events(step: Runnable[Any, Any], input: Any, **options: Any) -> AsyncIterator[dict[str, Any]]:
    """Stream a run of ``step`` as events: ``start``/``end``/``error``/``chunk`` of every traced step.

    Each event is ``{"event", "name", "run_id", "parent_run_id", "elapsed_ms", "data"}``.
    The top run (``step`` itself) is included; its chunks are the output stream.
    """

    async def drive(put: _bridge.Put) -> None:
        with tracing(EventCollector(put)):
            async for _ in Span(step).astream(input, **options):
                pass

    async for event in _bridge.afrom_tasks(drive):
        yield event
