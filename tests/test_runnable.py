"""Composition: sequence, parallel, lambda, passthrough, assign, branch, bind, retry, fallbacks, batch, streams."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from plait import (
    Assign,
    Branch,
    ChatPromptTemplate,
    Lambda,
    Parallel,
    Passthrough,
    Runnable,
    RunnableSequence,
    StrOutputParser,
    coerce,
)


class Add(Runnable[int, int]):
    def __init__(self, n: int) -> None:
        self.n = n

    def invoke(self, input: int, **kwargs) -> int:
        return input + self.n + kwargs.get("extra", 0)


class Flaky(Runnable[int, int]):
    """Fails the first ``failures`` calls."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def invoke(self, input: int, **kwargs) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"fail {self.calls}")
        return input


def test_pipe_with_functions_and_dicts_on_either_side():
    chain = (lambda x: x + 1) | Add(1) | {"a": lambda x: x, "b": lambda x: -x}
    assert chain.invoke(1) == {"a": 3, "b": -3}
    chain2 = {"x": Add(1)} | Lambda(lambda d: d["x"] * 10)
    assert chain2.invoke(1) == 20
    assert isinstance(chain, RunnableSequence) and len(chain.steps) == 3


def test_sequences_flatten():
    a, b, c = Add(1), Add(2), Add(3)
    assert ((a | b) | c).steps == (a | (b | c)).steps == [a, b, c]


def test_coerce_rejects_non_steps():
    with pytest.raises(TypeError, match="Cannot use a int as a chain step"):
        coerce(3)
    with pytest.raises(TypeError, match="str"):
        Add(1) | "nope"


def test_parallel_runs_branches_concurrently():
    meet = threading.Barrier(3, timeout=10)  # passes only when all three branches wait at once

    def branch(x):
        meet.wait()
        return x

    assert Parallel(a=branch, b=branch, c=branch).invoke(1) == {"a": 1, "b": 1, "c": 1}


async def test_parallel_async_runs_branches_concurrently():
    arrived, everyone = [0], asyncio.Event()

    async def branch(x):
        arrived[0] += 1
        if arrived[0] == 2:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), 10)  # only returns once both branches are running
        return x * 2

    assert await Parallel(a=branch, b=branch).ainvoke(2) == {"a": 4, "b": 4}


def test_async_function_lambda_works_sync_and_async():
    async def double(x):
        return x * 2

    step = Lambda(double)
    assert step.invoke(2) == 4
    assert asyncio.run(step.ainvoke(3)) == 6


def test_generator_lambda_is_a_stream_transform():
    def upper(chunks):
        for c in chunks:
            yield c.upper()

    chain = Lambda(lambda x: x) | upper
    assert chain.invoke("abc") == "ABC"
    chain2 = Lambda(lambda x: x) | (lambda x: x)

    def words(chunks):
        for c in chunks:
            yield from c.split()

    assert list((chain2 | words | upper).stream("a b c")) == ["A", "B", "C"]


def test_lambda_returning_a_runnable_runs_it():
    route = Lambda(lambda x: Add(100) if x > 0 else Add(-100))
    assert route.invoke(1) == 101 and route.invoke(-1) == -101


def test_passthrough_and_assign():
    chain = Passthrough.assign(total=lambda d: d["a"] + d["b"])
    assert chain.invoke({"a": 1, "b": 2}) == {"a": 1, "b": 2, "total": 3}
    chain2 = Lambda(lambda x: {"x": x}).assign(y=lambda d: d["x"] * 2)
    assert chain2.invoke(4) == {"x": 4, "y": 8}
    assert list(Assign(y=lambda d: 1).stream({"x": 0}))[0] == {"x": 0}
    with pytest.raises(TypeError, match="dict input"):
        Assign(y=lambda d: 1).invoke(3)


def test_branch_takes_first_matching_condition_else_default():
    b = Branch((lambda x: x < 0, lambda x: "neg"), (lambda x: x < 10, lambda x: "small"), default=lambda x: "big")
    assert [b.invoke(x) for x in (-1, 5, 50)] == ["neg", "small", "big"]
    assert asyncio.run(b.ainvoke(5)) == "small"
    assert list(b.stream(50)) == ["big"]


def test_bind_fixes_options():
    step = Add(1).bind(extra=10)
    assert step.invoke(1) == 12
    assert step.invoke(1, extra=0) == 2
    assert step.bind(extra=5).invoke(0) == 6
    assert step.batch([1, 2]) == [12, 13]


def test_sequence_rejects_options():
    with pytest.raises(TypeError, match=r"bind"):
        (Add(1) | Add(2)).invoke(1, extra=3)


def test_retry_stops_after_attempts_and_retries_only_given_errors():
    flaky = Flaky(failures=2)
    assert flaky.with_retry(attempts=3, backoff=0).invoke(7) == 7 and flaky.calls == 3
    flaky = Flaky(failures=5)
    with pytest.raises(ConnectionError, match="fail 3"):
        flaky.with_retry(attempts=3, backoff=0).invoke(1)
    assert flaky.calls == 3
    other = Flaky(failures=1, error=ValueError)
    with pytest.raises(ValueError):
        other.with_retry(retry_on=ConnectionError, attempts=3, backoff=0).invoke(1)
    assert other.calls == 1


def test_retry_backoff_grows_with_jitter_bounds():
    r = Flaky(0).with_retry(attempts=5, backoff=0.1, max_backoff=0.3, jitter=False)
    assert [r.delay(i) for i in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, 0.3]
    j = Flaky(0).with_retry(attempts=5, backoff=0.1, jitter=True)
    assert all(0 <= j.delay(2) <= 0.2 for _ in range(50))


async def test_retry_async():
    flaky = Flaky(failures=1)
    assert await flaky.with_retry(attempts=2, backoff=0).ainvoke(3) == 3


def test_fallbacks_run_in_order_and_raise_first_error():
    order = []

    def failing(tag):
        def f(x):
            order.append(tag)
            raise RuntimeError(tag)
        return f

    chain = Lambda(failing("a")).with_fallbacks([failing("b"), lambda x: "c"])
    assert chain.invoke(0) == "c" and order == ["a", "b"]
    with pytest.raises(RuntimeError, match="a") as err:
        Lambda(failing("x")).with_fallbacks([failing("y")]).invoke(0)
    assert any("y" in n for n in err.value.__notes__)


def test_fallbacks_for_streams_only_before_first_chunk():
    def broken(chunks):
        yield "partial"
        raise RuntimeError("cut")

    with pytest.raises(RuntimeError):
        list(Lambda(broken).with_fallbacks([lambda x: "ok"]).stream(0))
    assert list(Lambda(lambda x: 1 / 0).with_fallbacks([lambda x: "ok"]).stream(0)) == ["ok"]


def test_errors_carry_the_failing_step_name():
    def explode(x):
        raise ValueError("boom")

    chain = Add(1) | Lambda(explode, name="exploder") | Add(2)
    with pytest.raises(ValueError) as err:
        chain.invoke(1)
    assert err.value.plait_step == "exploder"
    assert "exploder" in "".join(err.value.__notes__)


def test_batch_concurrency_limit_and_return_exceptions():
    active, peak, lock = [0], [0], threading.Lock()

    def work(x):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        if x == 3:
            raise ValueError("three")
        return x * 2

    step = Lambda(work)
    out = step.batch(list(range(8)), max_concurrency=2, return_exceptions=True)
    assert out[:3] == [0, 2, 4] and isinstance(out[3], ValueError) and out[4:] == [8, 10, 12, 14]
    assert peak[0] == 2
    with pytest.raises(ValueError):
        step.batch([1, 3])


def test_sequence_batch_skips_failed_items_in_later_steps():
    calls = []
    chain = Lambda(lambda x: 10 // x) | Lambda(lambda x: calls.append(x) or x)
    out = chain.batch([1, 0, 5], return_exceptions=True)
    assert out[0] == 10 and isinstance(out[1], ZeroDivisionError) and out[2] == 2
    assert sorted(calls) == [2, 10]


async def test_abatch_concurrency_limit():
    active, peak = [0], [0]

    async def work(x):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        await asyncio.sleep(0.02)
        active[0] -= 1
        return x

    assert await Lambda(work).abatch(list(range(10)), max_concurrency=3) == list(range(10))
    assert peak[0] == 3


def test_parallel_streams_each_keys_chunks():
    def tokens(chunks):
        for c in chunks:
            for t in c.split():
                yield t + " "

    par = Parallel(words=Lambda(lambda x: x) | tokens, length=lambda x: len(x))
    chunks = list(par.stream("a b c"))
    assert {"length": 5} in chunks
    assert [c["words"] for c in chunks if "words" in c] == ["a ", "b ", "c "]


async def test_parallel_astream_and_sync_agree():
    def tokens(chunks):
        for c in chunks:
            yield from c.split()

    par = Parallel(w=Lambda(lambda x: x) | tokens, n=lambda x: len(x))
    sync = sorted(map(str, par.stream("x y")))
    asy = sorted(map(str, [c async for c in par.astream("x y")]))
    assert sync == asy


async def test_async_generator_lambda():
    async def agen(chunks):
        async for c in chunks:
            for ch in c:
                yield ch

    step = Lambda(agen)
    assert [c async for c in step.astream("abc")] == ["a", "b", "c"]
    assert step.invoke("abc") == "abc"


# --- one options contract: a composition takes no options, a wrapper passes them on ---------------
COMPOSITIONS = {
    "sequence": lambda: Add(1) | Add(2),
    "parallel": lambda: Parallel(a=Add(1), b=Add(2)),
    "assign": lambda: Assign(y=lambda d: 1),
    "branch": lambda: Branch((lambda x: True, Add(1)), default=Add(2)),
    "passthrough": lambda: Passthrough(),
}


async def _agen(x):
    yield x


def _calls(step):
    """Every way to call a step, each with an option (sync ones run, async ones awaited)."""
    return {
        "invoke": lambda: step.invoke({}, extra=1),
        "ainvoke": lambda: asyncio.run(step.ainvoke({}, extra=1)),
        "stream": lambda: list(step.stream({}, extra=1)),
        "astream": lambda: asyncio.run(_drain(step.astream({}, extra=1))),
        "transform": lambda: list(step.transform(iter([{}]), extra=1)),
        "atransform": lambda: asyncio.run(_drain(step.atransform(_agen({}), extra=1))),
        "batch": lambda: step.batch([{}, {}], extra=1),
        "abatch": lambda: asyncio.run(step.abatch([{}, {}], extra=1)),
    }


async def _drain(chunks):
    return [c async for c in chunks]


@pytest.mark.parametrize("kind", sorted(COMPOSITIONS))
@pytest.mark.parametrize("method", ["invoke", "ainvoke", "stream", "astream", "transform", "atransform",
                                    "batch", "abatch"])
def test_every_composition_rejects_options_it_cannot_pass_on(kind, method):
    step = COMPOSITIONS[kind]()
    with pytest.raises(TypeError, match=r"takes no call options \(got extra\).*\.bind\(extra="):
        _calls(step)[method]()


@pytest.mark.parametrize("kind", sorted(set(COMPOSITIONS) - {"passthrough"}))
def test_a_composition_rejects_options_before_any_item_runs(kind):
    step = COMPOSITIONS[kind]()
    with pytest.raises(TypeError, match="extra"):
        step.batch([{}, {}], extra=1, return_exceptions=True)
    with pytest.raises(TypeError, match="extra"):
        asyncio.run(step.abatch([{}, {}], extra=1, return_exceptions=True))


def test_a_traced_composition_rejects_options_too():
    from plait.tracing import Tracer, tracing

    with tracing(Tracer()), pytest.raises(TypeError, match="extra"):
        (Add(1) | Add(2)).invoke(1, extra=3)


@pytest.mark.parametrize("wrap", [lambda s: s.bind(extra=0), lambda s: s.with_retry(attempts=2, backoff=0),
                                  lambda s: Flaky(10**6).with_fallbacks([s])])
def test_wrappers_pass_options_to_the_wrapped_step(wrap):
    step = wrap(Add(1))
    assert step.invoke(1, extra=10) == 12
    assert asyncio.run(step.ainvoke(1, extra=10)) == 12
    assert list(step.stream(1, extra=10)) == [12]
    assert asyncio.run(_drain(step.astream(1, extra=10))) == [12]
    assert step.batch([1, 2], extra=10) == [12, 13]
    assert asyncio.run(step.abatch([1, 2], extra=10)) == [12, 13]


def test_fallbacks_with_options_are_traced():
    from plait.tracing import Tracer, tracing

    class Names(Tracer):
        def __init__(self):
            self.names = []

        def on_end(self, run):
            self.names.append(run.name)

    names = Names()
    with tracing(names):
        assert (Lambda(lambda x: x) | Flaky(1).with_fallbacks([Add(1)])).invoke(1) == 2
        assert Flaky(1).with_fallbacks([Add(1)]).invoke(1, extra=1) == 3
    assert names.names.count("Add") == 2


# --- warm_up reaches every part ------------------------------------------------------------------
class Warm(Add):
    def __init__(self, n=0):
        super().__init__(n)
        self.warmed = 0

    def warm_up(self):
        self.warmed += 1


def test_warm_up_reaches_the_parts_of_every_container():
    from plait.tracing import Tracer

    w = [Warm() for _ in range(12)]
    cond = Lambda(lambda x: True)
    chain = (w[0] | Parallel(a=w[1], b=Assign(c=w[2]))
             | Branch((w[3], w[4]), default=w[5])
             | w[6].bind(extra=1) | w[7].with_retry() | w[8].with_fallbacks([w[9]])
             | w[10].with_tracing(Tracer()) | Branch((cond, Passthrough()), default=w[11]))
    chain.warm_up()
    assert [x.warmed for x in w] == [1] * 12
    (ChatPromptTemplate.from_messages([("user", "{q}")]) | StrOutputParser()).warm_up()  # leaves: no-ops
    assert chain.substeps()[0] is w[0] and Lambda(len).substeps() == ()


# --- the thread bridge ---------------------------------------------------------------------------
def test_parallel_stream_stops_its_branches_when_the_consumer_leaves():
    stopped = threading.Event()

    def endless(chunks):
        try:
            i = 0
            for _ in chunks:
                while True:
                    yield i
                    i += 1
        finally:
            stopped.set()

    chunks = Parallel(a=endless, b=lambda x: x).stream(0)
    assert len([c for _, c in zip(range(5), chunks, strict=False)]) == 5
    chunks.close()
    assert stopped.wait(10)


async def test_astream_of_a_sync_stream_stops_its_thread_when_the_consumer_leaves():
    stopped = threading.Event()

    class Endless(Runnable[int, int]):
        def invoke(self, input, **kwargs):
            return input

        def stream(self, input, **kwargs):
            try:
                while True:
                    yield input
            finally:
                stopped.set()

    chunks = Endless().astream(1)
    assert [await chunks.__anext__() for _ in range(3)] == [1, 1, 1]
    await chunks.aclose()
    assert await asyncio.to_thread(stopped.wait, 10)


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_a_failing_branch_fails_the_parallel_stream(mode):
    def bad(x):
        raise KeyError("branch")

    par = Parallel(a=bad, b=lambda x: x)
    with pytest.raises(KeyError, match="branch"):
        if mode == "stream":
            list(par.stream(1))
        else:
            asyncio.run(_drain(par.astream(1)))


async def test_sync_generator_lambda_in_an_async_stream_gets_chunks_as_they_come():
    def double(chunks):
        for c in chunks:
            yield c * 2

    async def source():
        for i in range(4):
            yield i

    assert [c async for c in Lambda(double).atransform(source())] == [0, 2, 4, 6]

    async def broken():
        yield 1
        raise ValueError("source failed")

    with pytest.raises(ValueError, match="source failed"):
        [c async for c in Lambda(double).atransform(broken())]
