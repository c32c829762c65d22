"""Property-based tests of the composition laws (hypothesis)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from plait import Lambda, Parallel, Passthrough, StrOutputParser
from plait.fake import FakeChatModel
from plait.messages import add_chunks
from plait.runnable import Runnable
from plait.tracing import Tracer, tracing


def _add(n):
    return Lambda(lambda x: x + n, name=f"add{n}")


def _mul(n):
    return Lambda(lambda x: x * n, name=f"mul{n}")


def _spread(chunks):  # a streaming transform: emits its (int) input as +1 increments summing to it
    for c in chunks:
        yield from [1] * c if 0 < c < 50 else [c]


def _async_add(n):
    async def f(x):
        return x + n
    return Lambda(f, name=f"aadd{n}")


step = st.one_of(
    st.integers(-3, 3).map(_add),
    st.integers(-2, 2).map(_mul),
    st.integers(-3, 3).map(_async_add),
    st.just(Passthrough()),
    st.just(Lambda(_spread)),
    st.integers(0, 2).map(lambda n: Parallel(a=_add(n), b=_mul(n)) | (lambda d: d["a"] + d["b"])),
)
chains = st.lists(step, min_size=2, max_size=5).map(lambda steps: steps[0].pipe(*steps[1:]))
ints = st.integers(-20, 20)
SETTINGS = settings(max_examples=60, deadline=None)


def _sum(chunks):
    total = None
    for c in chunks:
        total = add_chunks(total, c)
    return total


@SETTINGS
@given(step, step, step, ints)
def test_associativity(a, b, c, x):
    assert ((a | b) | c).invoke(x) == (a | (b | c)).invoke(x)


@SETTINGS
@given(chains, st.lists(ints, max_size=6), st.sampled_from([None, 1, 3]))
def test_batch_equals_invoke_each(chain, xs, conc):
    assert chain.batch(xs, max_concurrency=conc) == [chain.invoke(x) for x in xs]


@SETTINGS
@given(chains, ints)
def test_stream_adds_up_to_invoke(chain, x):
    assert _sum(chain.stream(x)) == chain.invoke(x)


@SETTINGS
@given(chains, ints)
def test_async_equals_sync(chain, x):
    async def run():
        chunks = [c async for c in chain.astream(x)]
        return await chain.ainvoke(x), chunks, await chain.abatch([x, x + 1])

    ainv, achunks, abatch = asyncio.run(run())
    assert ainv == chain.invoke(x)
    assert achunks == list(chain.stream(x))
    assert abatch == chain.batch([x, x + 1])


@SETTINGS
@given(st.lists(st.text(alphabet="ab ", max_size=12), min_size=1, max_size=3))
def test_streamed_model_tokens_add_up(replies):
    chain = FakeChatModel(replies) | StrOutputParser()
    chain2 = FakeChatModel(replies) | StrOutputParser()
    for _ in replies:
        assert "".join(chain.stream("x")) == chain2.invoke("x")


@SETTINGS
@given(chains, ints)
def test_tracing_changes_no_result(chain, x):
    async def run():
        return await chain.ainvoke(x), [c async for c in chain.astream(x)]

    plain = chain.invoke(x), list(chain.stream(x)), chain.batch([x, x + 1]), asyncio.run(run())
    with tracing(Tracer()):
        traced = chain.invoke(x), list(chain.stream(x)), chain.batch([x, x + 1]), asyncio.run(run())
    assert traced == plain


class _Failing(Runnable[int, int]):
    def __init__(self, failures):
        self.failures, self.calls = failures, 0

    def invoke(self, input, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(self.calls)
        return input


@SETTINGS
@given(st.integers(0, 6), st.integers(1, 5))
def test_retries_stop_after_the_given_attempts(failures, attempts):
    step = _Failing(failures)
    try:
        step.with_retry(attempts=attempts, backoff=0).invoke(1)
        succeeded = True
    except ConnectionError:
        succeeded = False
    assert succeeded == (failures < attempts)
    assert step.calls == min(failures + 1, attempts)


@SETTINGS
@given(st.integers(0, 5))
def test_fallbacks_run_in_order(n_failing):
    order: list[int] = []

    def make(i, fail):
        def f(x):
            order.append(i)
            if fail:
                raise RuntimeError(i)
            return i
        return Lambda(f)

    steps = [make(i, True) for i in range(n_failing)] + [make(n_failing, False), make(99, False)]
    chain = steps[0].with_fallbacks(steps[1:])
    assert chain.invoke(0) == n_failing
    assert order == list(range(n_failing + 1))
