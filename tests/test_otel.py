"""The OpenTelemetry tracer: one span per step, parents as in the run, GenAI attributes on model calls."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from plait import AssistantMessage, ChatPromptTemplate, Lambda, StrOutputParser, Usage  # noqa: E402
from plait.fake import FakeChatModel  # noqa: E402
from plait.tracing import OpenTelemetryTracer, tracing  # noqa: E402

REPLY = AssistantMessage(content="Paris is the capital.", model="fake-2024", id="msg-1", finish_reason="stop",
                         usage=Usage(prompt_tokens=11, completion_tokens=5, total_tokens=16))


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = OpenTelemetryTracer(provider)
    yield tracer, provider, exporter
    provider.shutdown()


def _chain(model=None):
    prompt = ChatPromptTemplate.from_messages([("user", "{q}")])
    return prompt | (model or FakeChatModel([REPLY])) | StrOutputParser()


def _by_name(exporter):
    return {s.name: s for s in exporter.get_finished_spans()}


def test_a_three_step_chain_gives_one_span_per_step_under_the_chain(spans):
    tracer, _, exporter = spans
    with tracing(tracer):
        assert _chain().invoke({"q": "Capital of France?"}) == "Paris is the capital."
    by = _by_name(exporter)
    assert set(by) == {"Sequence", "ChatPromptTemplate", "chat fake", "StrOutputParser"}
    root = by["Sequence"]
    assert root.parent is None
    for name in ("ChatPromptTemplate", "chat fake", "StrOutputParser"):
        assert by[name].parent.span_id == root.context.span_id
        assert by[name].context.trace_id == root.context.trace_id
    assert all(s.status.status_code is StatusCode.UNSET for s in by.values())


def test_a_model_step_has_the_genai_attributes(spans):
    tracer, _, exporter = spans
    model = FakeChatModel([REPLY]).bind(temperature=0.2, max_tokens=64)
    with tracing(tracer):
        _chain(model).invoke({"q": "Capital of France?"})
    chat = _by_name(exporter)["chat fake"]
    assert chat.kind is SpanKind.CLIENT
    attrs = dict(chat.attributes)
    assert attrs == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "fake", "plait.step": "FakeChatModel(fake)",
        "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 64,
        "gen_ai.response.model": "fake-2024", "gen_ai.response.id": "msg-1",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 5,
    }


def test_a_streamed_model_step_has_the_attributes_of_the_summed_chunks(spans):
    tracer, _, exporter = spans
    with tracing(tracer):
        assert "".join(_chain(FakeChatModel(["one two three"])).stream({"q": "count"})) == "one two three"
    by = _by_name(exporter)
    chat = by["chat fake"]
    assert chat.parent.span_id == by["Sequence"].context.span_id
    assert chat.attributes["gen_ai.usage.output_tokens"] == 3
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("stop",)


def test_an_error_marks_the_failing_span_and_its_parents(spans):
    tracer, _, exporter = spans

    def explode(text):
        raise ValueError("no answer")

    chain = _chain() | Lambda(explode, name="explode")
    with tracing(tracer), pytest.raises(ValueError):
        chain.invoke({"q": "x"})
    by = _by_name(exporter)
    assert by["explode"].status.status_code is StatusCode.ERROR
    assert by["explode"].status.description == "ValueError: no answer"
    assert by["explode"].attributes["error.type"] == "ValueError"
    assert [e.name for e in by["explode"].events] == ["exception"]
    assert by["Sequence"].status.status_code is StatusCode.ERROR
    assert by["chat fake"].status.status_code is StatusCode.UNSET


def test_spans_nest_under_the_applications_current_span(spans):
    tracer, provider, exporter = spans
    app = provider.get_tracer("app")
    with app.start_as_current_span("request") as request, tracing(tracer):
        _chain().invoke({"q": "x"})
    assert _by_name(exporter)["Sequence"].parent.span_id == request.get_span_context().span_id


def test_each_input_of_a_batch_is_a_trace_of_its_own(spans):
    tracer, _, exporter = spans
    with tracing(tracer):
        _chain(FakeChatModel([REPLY])).batch([{"q": "a"}, {"q": "b"}])
    finished = exporter.get_finished_spans()
    roots = [s for s in finished if s.parent is None]
    assert len(roots) == 2 and len({r.context.trace_id for r in roots}) == 2
    for root in roots:
        children = [s for s in finished if s.parent is not None and s.parent.span_id == root.context.span_id]
        assert sorted(c.name for c in children) == ["ChatPromptTemplate", "StrOutputParser", "chat fake"]


def test_without_opentelemetry_the_error_names_the_extra(monkeypatch):
    from plait.defaults import MissingExtraError

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'plait\[otel\]'"):
        OpenTelemetryTracer()
