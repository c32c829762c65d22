"""An OpenTelemetry tracer: one span per traced step, so plait runs show up in Jaeger, Langfuse, Phoenix.

Spans nest like the steps (a run's span is the child of its parent run's span; a top run's span is
the child of whatever OpenTelemetry span is current, such as a web request). A failed step's span
has status ERROR and the exception recorded. A chat-model step's span follows the GenAI semantic
conventions: named ``chat {model}``, with ``gen_ai.operation.name``, ``gen_ai.request.model`` and
the request options, and from the reply ``gen_ai.response.model``, ``gen_ai.response.id``,
``gen_ai.response.finish_reasons``, ``gen_ai.usage.input_tokens`` and ``gen_ai.usage.output_tokens``.
Message contents are not recorded.

Needs the ``otel`` extra (``pip install 'plait[otel]'``).

Example::

    from opentelemetry.sdk.trace import TracerProvider
    from plait.tracing import OpenTelemetryTracer, tracing
    with tracing(OpenTelemetryTracer(TracerProvider())):
        chain.invoke({"question": "hi"})
"""

from __future__ import annotations

import threading
from typing import Any

from plait.defaults import require
from plait.tracing import Run, Tracer

# ChatOptions field -> GenAI request attribute
_REQUEST = {"temperature": "gen_ai.request.temperature", "top_p": "gen_ai.request.top_p",
            "max_tokens": "gen_ai.request.max_tokens", "seed": "gen_ai.request.seed",
            "stop": "gen_ai.request.stop_sequences"}


def _chat_model(step: Any) -> tuple[Any, dict[str, Any]]:
    """The chat model a step runs (through bind and retry wrappers) and the options bound on the way."""
    from plait.chat_model import ChatModel
    from plait.wrappers import Bound, Retry

    options: dict[str, Any] = {}
    while isinstance(step, (Bound, Retry)):
        if isinstance(step, Bound):
            options = {**step.kwargs, **options}
        step = step.bound
    return (step, options) if isinstance(step, ChatModel) else (None, {})


class OpenTelemetryTracer(Tracer):
    """Makes an OpenTelemetry span of every traced step.

    Args:
        tracer_provider: where spans go; the globally set provider when None.
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        require("opentelemetry", "otel", "opentelemetry-api")
        from opentelemetry import trace

        import plait

        self._trace = trace
        self._tracer = trace.get_tracer("plait", plait.__version__, tracer_provider=tracer_provider)
        self._spans: dict[str, Any] = {}
        self._lock = threading.Lock()

    def on_start(self, run: Run) -> None:
        from opentelemetry.trace import SpanKind

        with self._lock:
            parent = self._spans.get(run.parent_id) if run.parent_id is not None else None
        context = self._trace.set_span_in_context(parent) if parent is not None else None
        model, options = _chat_model(run.step)
        if model is None:
            span = self._tracer.start_span(run.name, context=context)
        else:
            attributes: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model.model_name,
                                          "plait.step": run.name}
            provider = getattr(model, "provider", None)
            if provider:
                attributes["gen_ai.provider.name"] = provider
            for key, value in {**model.default_options, **options, **run.options}.items():
                if key in _REQUEST and value is not None:
                    attributes[_REQUEST[key]] = value
            span = self._tracer.start_span(f"chat {model.model_name}", context=context, kind=SpanKind.CLIENT,
                                           attributes=attributes)
        with self._lock:
            self._spans[run.run_id] = span

    def _pop(self, run: Run) -> Any:
        with self._lock:
            return self._spans.pop(run.run_id, None)

    def on_end(self, run: Run) -> None:
        span = self._pop(run)
        if span is None:  # started before this tracer listened
            return
        if span.is_recording() and _chat_model(run.step)[0] is not None:
            _set_reply(span, run.output)
        span.end()

    def on_error(self, run: Run) -> None:
        from opentelemetry.trace import Status, StatusCode

        span = self._pop(run)
        if span is None:
            return
        error = run.error
        if error is not None:
            span.record_exception(error)
            span.set_attribute("error.type", type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        else:
            span.set_status(Status(StatusCode.ERROR))
        span.end()


def _set_reply(span: Any, reply: Any) -> None:
    """The GenAI response attributes of an AssistantMessage (invoke) or summed AssistantChunk (stream)."""
    if getattr(reply, "model", None):
        span.set_attribute("gen_ai.response.model", reply.model)
    if getattr(reply, "id", None):
        span.set_attribute("gen_ai.response.id", reply.id)
    if getattr(reply, "finish_reason", None):
        span.set_attribute("gen_ai.response.finish_reasons", [reply.finish_reason])
    usage = getattr(reply, "usage", None)
    if usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
