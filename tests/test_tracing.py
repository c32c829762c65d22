"""Tracing: callbacks with run ids and parents, astream_events, the console tracer, env switch."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading

import pytest

from plait import ChatPromptTemplate, Lambda, Parallel, StrOutputParser
from plait.fake import FakeChatModel
from plait.tracing import ConsoleTracer, Run, Tracer, tracing


class Recorder(Tracer):
    def __init__(self):
        self.events: list[tuple[str, Run]] = []
        self.chunks: list[tuple[str, object]] = []

    def on_start(self, run):
        self.events.append(("start", run))

    def on_end(self, run):
        self.events.append(("end", run))

    def on_error(self, run):
        self.events.append(("error", run))

    def on_chunk(self, run, chunk):
        self.chunks.append((run.name, chunk))


def _chain():
    prompt = ChatPromptTemplate.from_messages([("user", "{q}")])
    return prompt | FakeChatModel(["hello big world"]) | StrOutputParser()


def test_invoke_traces_a_tree_with_timings():
    rec = Recorder()
    with tracing(rec):
        assert _chain().invoke({"q": "x"}) == "hello big world"
    ends = [r for kind, r in rec.events if kind == "end"]
    root = next(r for r in ends if r.parent_id is None)
    children = [r for r in ends if r.parent_id == root.run_id]
    assert [c.name for c in children] == ["ChatPromptTemplate", "FakeChatModel(fake)", "StrOutputParser"]
    assert root.output == "hello big world" and all(c.end is not None and c.elapsed_ms >= 0 for c in ends)
    assert len({r.run_id for r in ends}) == 4


def test_nested_parallel_branches_have_their_parent():
    rec = Recorder()
    chain = Lambda(lambda x: x, name="first") | Parallel(a=Lambda(lambda x: x + 1, name="a"),
                                                         b=Lambda(lambda x: x + 2, name="b"))
    with tracing(rec):
        assert chain.invoke(1) == {"a": 2, "b": 3}
    ends = {r.name: r for kind, r in rec.events if kind == "end"}
    assert ends["a"].parent_id == ends["b"].parent_id == ends["Parallel"].run_id


def test_errors_are_reported_with_the_step_name():
    rec = Recorder()

    def boom(x):
        raise KeyError("nope")

    with tracing(rec), pytest.raises(KeyError) as err:
        (Lambda(lambda x: x) | Lambda(boom, name="boom")).invoke(1)
    errors = [r for kind, r in rec.events if kind == "error"]
    assert errors[0].name == "boom" and err.value.plait_step == "boom"


def test_stream_emits_chunk_events():
    rec = Recorder()
    with tracing(rec):
        assert "".join(_chain().stream({"q": "x"})) == "hello big world"
    model_chunks = [c for name, c in rec.chunks if name == "FakeChatModel(fake)"]
    parser_chunks = [c for name, c in rec.chunks if name == "StrOutputParser"]
    assert parser_chunks == ["hello", " big", " world"] and len(model_chunks) >= 3
    ends = {r.name: r for kind, r in rec.events if kind == "end"}
    assert ends["StrOutputParser"].output == "hello big world"


async def test_astream_events():
    events = [e async for e in _chain().astream_events({"q": "x"})]
    kinds = {(e["event"], e["name"]) for e in events}
    assert ("start", "Sequence") in kinds and ("end", "Sequence") in kinds
    assert ("end", "FakeChatModel(fake)") in kinds
    root = next(e for e in events if e["event"] == "end" and e["parent_run_id"] is None)
    assert root["data"]["output"] == "hello big world"
    tokens = [e["data"]["chunk"] for e in events if e["event"] == "chunk" and e["name"] == "StrOutputParser"]
    assert tokens == ["hello", " big", " world"]


def test_console_tracer_prints_tree_with_inputs_and_outputs():
    buf = io.StringIO()
    assert _chain().with_tracing(ConsoleTracer(verbose=True, file=buf)).invoke({"q": "x"}) == "hello big world"
    text = buf.getvalue()
    assert "[Sequence]" in text and "  [FakeChatModel(fake)]" in text and " ms ok" in text
    assert "out: 'hello big world'" in text


def test_env_variable_switches_console_tracing_on():
    code = ("from plait import Lambda\n"
            "print((Lambda(lambda x: x + 1, name='inc') | Lambda(lambda x: x * 2, name='dbl')).invoke(1))")
    env = {**os.environ, "PLAIT_TRACE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "4"
    assert "[inc]" in out.stderr and "[dbl]" in out.stderr


def _trees(text: str) -> list[list[str]]:
    """The printed trees, each as its lines without timings (``"  [name]"``)."""
    trees: list[list[str]] = []
    for line in text.splitlines():
        if "[" not in line or line.lstrip().startswith(("in:", "out:")):
            continue
        name = line[: line.index("]") + 1]
        if not line.startswith(" "):
            trees.append([])
        trees[-1].append(name)
    return trees


def _two_steps():
    return Lambda(lambda x: x, name="first") | Lambda(str.upper, name="upper")


def test_console_tracer_prints_each_input_of_a_batch_as_a_whole_tree():
    tree = ["[Sequence]", "  [first]", "  [upper]"]
    buf = io.StringIO()
    assert _two_steps().with_tracing(ConsoleTracer(file=buf)).batch(["a", "b"]) == ["A", "B"]
    assert _trees(buf.getvalue()) == [tree, tree]
    buf = io.StringIO()
    with tracing(ConsoleTracer(file=buf)):
        assert _two_steps().batch(["a", "b", "c"]) == ["A", "B", "C"]
    assert _trees(buf.getvalue()) == [tree] * 3


def test_console_tracer_keeps_concurrent_runs_apart():
    buf = io.StringIO()
    chain = _two_steps().with_tracing(ConsoleTracer(file=buf))
    start = threading.Barrier(8, timeout=10)

    def run(i: int) -> None:
        start.wait()
        for _ in range(20):
            assert chain.invoke(f"x{i}") == f"X{i}"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _trees(buf.getvalue()) == [["[Sequence]", "  [first]", "  [upper]"]] * 160


def test_plait_trace_set_after_import_takes_effect(monkeypatch, capsys):
    chain = Lambda(lambda x: x + 1, name="inc") | Lambda(lambda x: x * 2, name="dbl")
    monkeypatch.setenv("PLAIT_TRACE", "1")
    assert chain.invoke(1) == 4
    assert _trees(capsys.readouterr().err) == [["[Sequence]", "  [inc]", "  [dbl]"]]
    monkeypatch.setenv("PLAIT_TRACE", "verbose")
    chain.invoke(1)
    assert "out: 4" in capsys.readouterr().err
    monkeypatch.setenv("PLAIT_TRACE", "0")
    chain.invoke(1)
    assert capsys.readouterr().err == ""


def test_a_stream_stopped_early_still_ends_its_runs():
    rec = Recorder()
    with tracing(rec):
        chunks = _chain().stream({"q": "x"})
        assert next(chunks) == "hello"
        chunks.close()
    started = {r.run_id for kind, r in rec.events if kind == "start"}
    ended = {r.run_id for kind, r in rec.events if kind == "end"}
    assert len(started) == 4 and started == ended


def test_stream_runs_have_their_parent_and_tracers_stay_inside_the_run(monkeypatch):
    from plait.tracing import listening

    monkeypatch.delenv("PLAIT_TRACE", raising=False)
    rec = Recorder()
    chunks = _chain().with_tracing(rec).stream({"q": "x"})
    assert next(chunks) == "hello"
    assert not listening()  # the generator is paused: its tracers do not leak into the caller
    assert "".join(chunks) == " big world"
    ends = {r.name: r for kind, r in rec.events if kind == "end"}
    root = ends["Sequence"]
    assert root.parent_id is None
    assert all(ends[n].parent_id == root.run_id for n in ("ChatPromptTemplate", "FakeChatModel(fake)",
                                                           "StrOutputParser"))


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_a_top_level_dict_of_steps_is_the_root_of_its_tree(mode):
    rec = Recorder()
    par = Parallel(a=Lambda(lambda x: x + 1, name="a"), b=Lambda(lambda x: x + 2, name="b"))
    with tracing(rec):
        list(par.stream(1)) if mode == "stream" else par.invoke(1)
    ends = {r.name: r for kind, r in rec.events if kind == "end"}
    assert ends["Parallel"].parent_id is None
    assert ends["a"].parent_id == ends["b"].parent_id == ends["Parallel"].run_id
