"""Compositions: steps made of several steps.

- :class:`Sequence_` (public name ``RunnableSequence``): ``a | b | c``, one step after another;
- :class:`Parallel`: a dict of steps run on the same input (a plain dict in a chain becomes one);
- :class:`Assign`: the input dict plus keys computed from it;
- :class:`Branch`: the step of the first condition that holds.

All share :class:`Composite`: a composition takes no call options (bind them to the step that
uses them), calls its parts through the tracing hook, and is the top run of a traced tree when
nothing encloses it.

Example::

    from plait import Branch, Parallel, Passthrough
    both = Parallel(upper=str.upper, same=Passthrough())          # {"upper": "HI", "same": "hi"}
    sign = Branch((lambda x: x < 0, lambda x: "negative"), default=lambda x: "non-negative")
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from plait import _bridge, tracing
from plait.messages import add_chunks
from plait.runnable import Runnable, coerce, options_error

In = TypeVar("In")
Out = TypeVar("Out")

#: How a composition calls one of its parts: the part itself, or a traced view of it.
Via = Callable[[Any], Any]


def _itself(step: Any) -> Any:
    return step


class Composite(Runnable[In, Out]):
    """Base of the steps made of several steps: a sequence, a dict of steps, an assign, a branch.

    It takes no call options: an option belongs to the step that uses it (``step.bind(k=v)``), so
    one given here raises instead of being dropped. It calls its parts through ``via``: the part
    itself, or while tracers listen a traced view (:func:`plait.tracing.traced`); called with no
    run around it, a composition is first a run itself, the top of the tree.

    Subclasses implement ``_invoke``, ``_ainvoke``, ``_stream`` and ``_astream`` (each taking the
    input and ``via``) and override ``_transform`` / ``_atransform`` where they work chunk by chunk.
    """

    def _via(self, options: Mapping[str, Any]) -> Via | None:
        """How to call the parts; None when this call must first open its own (top) run."""
        if options:
            raise options_error(self, options)
        if not tracing.listening():
            return _itself
        return tracing.Span if tracing.current_run() is not None else None

    def invoke(self, input: In, **options: Any) -> Out:
        if not options and not tracing.listening():  # the hot path, spelled out
            return self._invoke(input, _itself)
        via = self._via(options)
        return self._invoke(input, via) if via else tracing.Span(self).invoke(input)

    async def ainvoke(self, input: In, **options: Any) -> Out:
        via = self._via(options)
        return await (self._ainvoke(input, via) if via else tracing.Span(self).ainvoke(input))

    def stream(self, input: In, **options: Any) -> Iterator[Out]:  # type: ignore[override]
        via = self._via(options)
        return self._stream(input, via) if via else tracing.Span(self).stream(input)

    def astream(self, input: In, **options: Any) -> AsyncIterator[Out]:  # type: ignore[override]
        via = self._via(options)
        return self._astream(input, via) if via else tracing.Span(self).astream(input)

    def transform(self, inputs: Iterator[In], **options: Any) -> Iterator[Out]:  # type: ignore[override]
        via = self._via(options)
        return self._transform(inputs, via) if via else tracing.Span(self).transform(inputs)

    def atransform(self, inputs: AsyncIterator[In], **options: Any) -> AsyncIterator[Out]:  # type: ignore[override]
        via = self._via(options)
        return self._atransform(inputs, via) if via else tracing.Span(self).atransform(inputs)

    def batch(self, inputs: Sequence[In], *, max_concurrency: int | None = None,
              return_exceptions: bool = False, **options: Any) -> list[Any]:
        if options:
            raise options_error(self, options)
        return super().batch(inputs, max_concurrency=max_concurrency, return_exceptions=return_exceptions)

    async def abatch(self, inputs: Sequence[In], *, max_concurrency: int | None = None,
                     return_exceptions: bool = False, **options: Any) -> list[Any]:
        if options:
            raise options_error(self, options)
        return await super().abatch(inputs, max_concurrency=max_concurrency, return_exceptions=return_exceptions)

    # --- what a composition implements -----------------------------------------------------------
    def _invoke(self, input: In, via: Via) -> Out:
        raise NotImplementedError

    async def _ainvoke(self, input: In, via: Via) -> Out:
        raise NotImplementedError

    def _stream(self, input: In, via: Via) -> Iterator[Out]:
        raise NotImplementedError

    def _astream(self, input: In, via: Via) -> AsyncIterator[Out]:
        raise NotImplementedError

    def _transform(self, inputs: Iterator[In], via: Via) -> Iterator[Out]:
        total: Any = None
        for chunk in inputs:
            total = add_chunks(total, chunk)
        yield from self._stream(total, via)

    async def _atransform(self, inputs: AsyncIterator[In], via: Via) -> AsyncIterator[Out]:
        total: Any = None
        async for chunk in inputs:
            total = add_chunks(total, chunk)
        async for out in self._astream(total, via):
            yield out


class Sequence_(Composite[Any, Any]):
    """Steps run one after another; ``a | b | c`` builds one (flattened) sequence.

    Streaming pipes each step's output chunks into the next step's ``transform``.
    """

    def __init__(self, *steps: Runnable[Any, Any]) -> None:
        flat: list[Runnable[Any, Any]] = []
        for s in steps:
            flat.extend(s.steps if isinstance(s, Sequence_) else [s])
        if len(flat) < 2:
            raise ValueError("A sequence needs at least two steps")
        self.steps: list[Runnable[Any, Any]] = flat
        self.io_bound = any(s.io_bound for s in flat)

    def __repr__(self) -> str:
        return " | ".join(s.get_name() for s in self.steps)

    def get_name(self) -> str:
        return self.name or "Sequence"

    def substeps(self) -> tuple[Runnable[Any, Any], ...]:
        return tuple(self.steps)

    def _invoke(self, input: Any, via: Via) -> Any:
        step = self.steps[0]
        try:
            for step in self.steps if via is _itself else map(via, self.steps):  # (no call per step untraced)
                input = step.invoke(input)
        except Exception as e:
            tracing.tag_error(e, step.get_name())
            raise
        return input

    async def _ainvoke(self, input: Any, via: Via) -> Any:
        step = self.steps[0]
        try:
            for step in self.steps:
                input = await via(step).ainvoke(input)
        except Exception as e:
            tracing.tag_error(e, step.get_name())
            raise
        return input

    def _stream(self, input: Any, via: Via) -> Iterator[Any]:
        return self._transform(iter([input]), via)

    def _astream(self, input: Any, via: Via) -> AsyncIterator[Any]:
        return self._atransform(_bridge.single(input), via)

    def _transform(self, inputs: Iterator[Any], via: Via) -> Iterator[Any]:
        for step in self.steps:
            inputs = via(step).transform(inputs)
        return inputs

    def _atransform(self, inputs: AsyncIterator[Any], via: Via) -> AsyncIterator[Any]:
        for step in self.steps:
            inputs = via(step).atransform(inputs)
        return inputs

    def batch(self, inputs: Sequence[Any], *, max_concurrency: int | None = None,
              return_exceptions: bool = False, **options: Any) -> list[Any]:
        if options or tracing.listening():  # options raise; traced, each input is a tree of its own
            return super().batch(inputs, max_concurrency=max_concurrency, return_exceptions=return_exceptions,
                                 **options)
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


# Public name: ``Sequence`` would shadow collections.abc inside this module.
RunnableSequence = Sequence_


class Parallel(Composite[Any, dict[str, Any]]):
    """Runs several steps on the same input concurrently; returns a dict of their outputs.

    A plain dict in a chain becomes one: ``{"context": retriever, "question": Passthrough()}``.
    Steps that may wait (``io_bound``) run in threads; the others run in the caller's thread.
    """

    def __init__(self, steps: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self.steps = {k: coerce(v) for k, v in {**(steps or {}), **kwargs}.items()}
        if not self.steps:
            raise ValueError("Parallel needs at least one step")
        self.io_bound = any(s.io_bound for s in self.steps.values())

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k}: {v.get_name()}" for k, v in self.steps.items()) + "}"

    def substeps(self) -> tuple[Runnable[Any, Any], ...]:
        return tuple(self.steps.values())

    def _invoke(self, input: Any, via: Via) -> dict[str, Any]:
        waiting = [k for k, s in self.steps.items() if s.io_bound]
        if len(waiting) < 2:
            return {k: via(s).invoke(input) for k, s in self.steps.items()}
        # Branches that may wait run in threads; cheap ones run here meanwhile.
        with ThreadPoolExecutor(len(waiting)) as pool:
            futures = {k: pool.submit(contextvars.copy_context().run, via(self.steps[k]).invoke, input)
                       for k in waiting}
            done = {k: via(s).invoke(input) for k, s in self.steps.items() if k not in futures}
            done.update({k: f.result() for k, f in futures.items()})
        return {k: done[k] for k in self.steps}

    async def _ainvoke(self, input: Any, via: Via) -> dict[str, Any]:
        values = await asyncio.gather(*(via(s).ainvoke(input) for s in self.steps.values()))
        return dict(zip(self.steps, values, strict=True))

    def _stream(self, input: Any, via: Via) -> Iterator[dict[str, Any]]:
        """Yields ``{key: chunk}`` for each branch's chunks as they arrive (each branch in a thread)."""

        def branch(key: str, step: Runnable[Any, Any]) -> _bridge.Work:
            def work(put: _bridge.Put) -> None:
                for chunk in via(step).stream(input):
                    put({key: chunk})
            return work

        return _bridge.from_threads(*(branch(k, s) for k, s in self.steps.items()))

    def _astream(self, input: Any, via: Via) -> AsyncIterator[dict[str, Any]]:
        def branch(key: str, step: Runnable[Any, Any]) -> _bridge.AsyncWork:
            async def work(put: _bridge.Put) -> None:
                async for chunk in via(step).astream(input):
                    put({key: chunk})
            return work

        return _bridge.afrom_tasks(*(branch(k, s) for k, s in self.steps.items()))


class Assign(Composite[dict[str, Any], dict[str, Any]]):
    """Adds keys to a dict input, each computed by a step from the whole input.

    Streaming yields the input first, then ``{key: chunk}`` as the new keys' chunks arrive.
    """

    def __init__(self, **steps: Any) -> None:
        self.parallel = Parallel(steps)
        self.io_bound = self.parallel.io_bound

    def substeps(self) -> tuple[Runnable[Any, Any], ...]:
        return self.parallel.substeps()

    def _check(self, input: Any) -> None:
        if not isinstance(input, Mapping):
            raise TypeError(f"Assign needs a dict input, got {type(input).__name__}")

    def _invoke(self, input: dict[str, Any], via: Via) -> dict[str, Any]:
        self._check(input)
        return {**input, **self.parallel._invoke(input, via)}

    async def _ainvoke(self, input: dict[str, Any], via: Via) -> dict[str, Any]:
        self._check(input)
        return {**input, **(await self.parallel._ainvoke(input, via))}

    def _stream(self, input: dict[str, Any], via: Via) -> Iterator[dict[str, Any]]:
        self._check(input)
        yield dict(input)
        yield from self.parallel._stream(input, via)

    async def _astream(self, input: dict[str, Any], via: Via) -> AsyncIterator[dict[str, Any]]:
        self._check(input)
        yield dict(input)
        async for c in self.parallel._astream(input, via):
            yield c


class Branch(Composite[Any, Any]):
    """Runs the step of the first condition that holds, else the default.

    Example: ``Branch((lambda x: x["lang"] == "fr", french), (lambda x: True, english), default=english)``.
    """

    def __init__(self, *cases: tuple[Any, Any], default: Any) -> None:
        self.cases = [(coerce(cond), coerce(step)) for cond, step in cases]
        self.default = coerce(default)

    def substeps(self) -> tuple[Runnable[Any, Any], ...]:
        return (*(r for case in self.cases for r in case), self.default)

    def _pick(self, input: Any, via: Via) -> Runnable[Any, Any]:
        for cond, step in self.cases:
            if via(cond).invoke(input):
                return step
        return self.default

    async def _apick(self, input: Any, via: Via) -> Runnable[Any, Any]:
        for cond, step in self.cases:
            if await via(cond).ainvoke(input):
                return step
        return self.default

    def _invoke(self, input: Any, via: Via) -> Any:
        return via(self._pick(input, via)).invoke(input)

    async def _ainvoke(self, input: Any, via: Via) -> Any:
        return await via(await self._apick(input, via)).ainvoke(input)

    def _stream(self, input: Any, via: Via) -> Iterator[Any]:
        yield from via(self._pick(input, via)).stream(input)

    async def _astream(self, input: Any, via: Via) -> AsyncIterator[Any]:
        async for c in via(await self._apick(input, via)).astream(input):
            yield c
