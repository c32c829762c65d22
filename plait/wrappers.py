"""Wrappers of one step: fixed options (``bind``), retries, fallbacks.

A wrapper passes call options through to the step it wraps, reaches the step's attributes
(``model.bind(temperature=0).model_name``) and warms it up.

Retry and fallbacks share one rule: a stream is tried again (or handed to the next step) only if
it failed before its first chunk, so no chunk is ever delivered twice.

Example::

    model.bind(temperature=0).with_retry(retry_on=ConnectionError).with_fallbacks([backup_model])
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from typing import Any

from plait import tracing
from plait.runnable import Runnable


class _Wrapper(Runnable[Any, Any]):
    """Base for steps that wrap one other step."""

    def __init__(self, bound: Runnable[Any, Any]) -> None:
        self.bound = bound
        self.io_bound = bound.io_bound

    def get_name(self) -> str:
        return self.name or self.bound.get_name()

    def substeps(self) -> tuple[Runnable[Any, Any], ...]:
        return (self.bound,)

    def __getattr__(self, item: str) -> Any:  # reach the wrapped component's attributes
        if item == "bound":
            raise AttributeError(item)
        return getattr(self.bound, item)


class Bound(_Wrapper):
    """A step with some call options fixed (``model.bind(temperature=0)``); call options override them."""

    def __init__(self, bound: Runnable[Any, Any], options: dict[str, Any]) -> None:
        super().__init__(bound)
        self.kwargs = options

    def __repr__(self) -> str:
        return f"{self.bound!r}.bind({self.kwargs})"

    def bind(self, **options: Any) -> Runnable[Any, Any]:
        return Bound(self.bound, {**self.kwargs, **options})

    def invoke(self, input: Any, **options: Any) -> Any:
        return self.bound.invoke(input, **{**self.kwargs, **options})

    async def ainvoke(self, input: Any, **options: Any) -> Any:
        return await self.bound.ainvoke(input, **{**self.kwargs, **options})

    def stream(self, input: Any, **options: Any) -> Iterator[Any]:  # type: ignore[override]
        return self.bound.stream(input, **{**self.kwargs, **options})

    def astream(self, input: Any, **options: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        return self.bound.astream(input, **{**self.kwargs, **options})

    def transform(self, inputs: Iterator[Any], **options: Any) -> Iterator[Any]:  # type: ignore[override]
        return self.bound.transform(inputs, **{**self.kwargs, **options})

    def atransform(self, inputs: AsyncIterator[Any], **options: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        return self.bound.atransform(inputs, **{**self.kwargs, **options})

    def batch(self, inputs: Sequence[Any], *, max_concurrency: int | None = None,
              return_exceptions: bool = False, **options: Any) -> list[Any]:
        return self.bound.batch(inputs, max_concurrency=max_concurrency, return_exceptions=return_exceptions,
                                **{**self.kwargs, **options})

    async def abatch(self, inputs: Sequence[Any], *, max_concurrency: int | None = None,
                     return_exceptions: bool = False, **options: Any) -> list[Any]:
        return await self.bound.abatch(inputs, max_concurrency=max_concurrency,
                                       return_exceptions=return_exceptions, **{**self.kwargs, **options})


class _Attempt:
    """One try of a step: a handled error before the first item is recorded and swallowed."""

    def __init__(self, step: Any, handles: tuple[type[BaseException], ...], errors: list[BaseException],
                 pause: float) -> None:
        self.step, self.handles, self.errors, self.pause = step, handles, errors, pause
        self.started = False

    def seen(self, item: Any) -> Any:
        self.started = True
        return item

    def __enter__(self) -> _Attempt:
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> bool:
        if error is None or self.started or not isinstance(error, self.handles):
            return False
        self.errors.append(error)
        return True


class _Tries(_Wrapper):
    """Base of the wrappers that try steps in turn until one succeeds (retry, fallbacks).

    Subclasses say which steps to try (:meth:`_tries`), how long to wait after a failure
    (:meth:`_pause`) and what to raise when every try failed (:meth:`_give_up`).
    """

    handles: tuple[type[BaseException], ...] = (Exception,)

    def _tries(self) -> Iterable[Any]:
        raise NotImplementedError

    def _pause(self, failures: int) -> float:
        return 0.0

    def _give_up(self, errors: list[BaseException]) -> BaseException:
        raise NotImplementedError

    def _attempts(self) -> Iterator[_Attempt]:
        """One :class:`_Attempt` per step to try; raises :meth:`_give_up`'s error when all failed."""
        errors: list[BaseException] = []
        for step in self._tries():
            yield _Attempt(step, self.handles, errors, self._pause(len(errors)) if errors else 0.0)
        raise self._give_up(errors)

    def _first(self, call: Callable[[Any], Iterable[Any]]) -> Generator[Any, None, None]:
        """Yield the items of the first try that does not fail before its first item.

        A failure after the first item propagates: no item is ever delivered twice.
        """
        for attempt in self._attempts():
            time.sleep(attempt.pause)
            with attempt:
                yield from map(attempt.seen, call(attempt.step))
                return

    async def _afirst(self, call: Callable[[Any], AsyncIterator[Any]]) -> AsyncGenerator[Any, None]:
        for attempt in self._attempts():
            await asyncio.sleep(attempt.pause)
            with attempt:
                async for item in call(attempt.step):
                    yield attempt.seen(item)
                return

    def invoke(self, input: Any, **options: Any) -> Any:
        tries = self._first(lambda step: (step.invoke(input, **options),))
        try:
            return next(tries)
        finally:
            tries.close()

    async def ainvoke(self, input: Any, **options: Any) -> Any:
        async def result(step: Any) -> AsyncIterator[Any]:
            yield await step.ainvoke(input, **options)

        tries = self._afirst(result)
        try:
            return await tries.__anext__()
        finally:
            await tries.aclose()

    def stream(self, input: Any, **options: Any) -> Iterator[Any]:  # type: ignore[override]
        return self._first(lambda step: step.stream(input, **options))

    def astream(self, input: Any, **options: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        return self._afirst(lambda step: step.astream(input, **options))


class Retry(_Tries):
    """Retries a step on the given exceptions, with exponential backoff and full jitter.

    ``attempts`` counts all tries (3 means one call and at most two retries). A stream is retried
    only if it failed before its first chunk. When every try fails, the last error is raised.
    """

    def __init__(self, bound: Runnable[Any, Any], *, retry_on: Any = Exception, attempts: int = 3,
                 backoff: float = 0.5, max_backoff: float = 20.0, jitter: bool = True) -> None:
        super().__init__(bound)
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.retry_on = self.handles = retry_on if isinstance(retry_on, tuple) else (retry_on,)
        self.attempts, self.backoff, self.max_backoff, self.jitter = attempts, backoff, max_backoff, jitter

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return random.uniform(0, base) if self.jitter else base

    def _tries(self) -> Iterable[Any]:
        return itertools.repeat(self.bound, self.attempts)

    def _pause(self, failures: int) -> float:
        return self.delay(failures)

    def _give_up(self, errors: list[BaseException]) -> BaseException:
        return errors[-1]


class Fallbacks(_Tries):
    """Tries the step, then each fallback in order; raises the first error if all fail.

    Each try is a run of its own when traced, so a trace shows which fallback answered.
    """

    def __init__(self, bound: Runnable[Any, Any], fallbacks: list[Runnable[Any, Any]], *,
                 exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,)) -> None:
        super().__init__(bound)
        self.fallbacks = fallbacks
        self.exceptions_to_handle = self.handles = exceptions_to_handle

    @property
    def runnables(self) -> list[Runnable[Any, Any]]:
        return [self.bound, *self.fallbacks]

    def substeps(self) -> tuple[Runnable[Any, Any], ...]:
        return tuple(self.runnables)

    def _tries(self) -> Iterable[Any]:
        return (tracing.traced(r) for r in self.runnables)

    def _give_up(self, errors: list[BaseException]) -> BaseException:
        first = errors[0]
        for e in errors[1:]:
            first.add_note(f"fallback also failed: {type(e).__name__}: {e}")
        return first
