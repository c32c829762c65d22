"""Generic routes for any Runnable: ``/invoke``, ``/batch``, ``/stream`` and their JSON schemas.

- ``POST /invoke`` ``{"input": X, "options": {...}}`` -> ``{"output": Y, "metadata": {"run_id"}}``
- ``POST /batch`` ``{"inputs": [X, ...], "options": {...}}`` -> ``{"output": [Y, ...], "metadata": {"run_ids"}}``
- ``POST /stream`` ``{"input": X}`` -> server-sent events ``event: data`` (one JSON chunk each),
  then ``event: end``; an error after the start is ``event: error`` with an OpenAI error object.
- ``GET /input_schema``, ``GET /output_schema``: the JSON schemas (see :mod:`plait.serve.schemas`).

The input is checked against the derived input type (and converted: a JSON object becomes the
pydantic model the runnable takes); outputs go through :func:`plait.serve.convert.jsonable`.
``options`` are call options (e.g. ``temperature`` for a chat model); a chain takes none.

LangServe's request shape is accepted too, so its ``RemoteRunnable`` works: ``kwargs`` are call
options like ``options``, and ``config`` (tags, metadata, run name: tracing settings of the
caller) is accepted and not used. A client leaving, or ``timeout_s``, stops the work as on the
OpenAI routes (:mod:`plait.serve.running`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from plait.runnable import Runnable
from plait.serve.config import ServeConfig
from plait.serve.convert import jsonable
from plait.serve.errors import APIError, guarded
from plait.serve.openai_types import parse
from plait.serve.running import run_request
from plait.serve.schemas import InputCheck, io_types, json_schema
from plait.serve.streaming import EventStream

MAX_BATCH = 256


class _Generic(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    options: dict[str, Any] = Field(default_factory=dict)
    kwargs: dict[str, Any] = Field(default_factory=dict)  # LangServe's name for call options
    config: dict[str, Any] | list[dict[str, Any]] | None = None  # LangServe's run config: not used

    def call_options(self) -> dict[str, Any]:
        both = self.options.keys() & self.kwargs.keys()
        if both:
            raise APIError(400, f"{sorted(both)} given in both 'options' and 'kwargs'; give each once.",
                           param="kwargs")
        return {**self.options, **self.kwargs}


class InvokeRequest(_Generic):
    input: Any


class BatchRequest(_Generic):
    inputs: list[Any] = Field(max_length=MAX_BATCH)


def _run_id() -> str:
    return str(uuid.uuid4())


def _error_event(err: APIError) -> bytes:
    return b"event: error\ndata: " + json.dumps(err.body()).encode() + b"\n\n"


async def _stream_events(runnable: Runnable[Any, Any], value: Any, options: dict[str, Any]) -> AsyncIterator[bytes]:
    async for chunk in runnable.astream(value, **options):
        yield b"event: data\ndata: " + json.dumps(jsonable(chunk), ensure_ascii=False).encode() + b"\n\n"
    yield b"event: end\ndata: {}\n\n"


def add_generic_routes(app: FastAPI, runnable: Runnable[Any, Any], config: ServeConfig, *,
                       input_schema: Any = None, output_schema: Any = None) -> None:
    in_type, out_type = io_types(runnable)
    check = InputCheck(in_type)
    schemas = {"input": input_schema if input_schema is not None else json_schema(in_type),
               "output": output_schema if output_schema is not None else json_schema(out_type)}
    if isinstance(schemas["input"], type) and issubclass(schemas["input"], BaseModel):
        check = InputCheck(schemas["input"])
    for key in ("input", "output"):
        if isinstance(schemas[key], type):
            schemas[key] = json_schema(schemas[key])

    def checked(value: Any) -> Any:
        try:
            return check(value)
        except ValueError as e:
            raise APIError(400, f"Invalid input for the served {runnable.get_name()}: {e}", param="input") from None

    @app.get("/input_schema")
    async def get_input_schema() -> dict[str, Any]:
        return schemas["input"]

    @app.get("/output_schema")
    async def get_output_schema() -> dict[str, Any]:
        return schemas["output"]

    @app.post("/invoke")
    @guarded
    async def invoke(request: Request) -> Response:
        req = parse(InvokeRequest, await request.body())
        value, options = checked(req.input), req.call_options()
        output = await run_request(lambda: runnable.ainvoke(value, **options), request.receive, config.timeout_s)
        return JSONResponse({"output": jsonable(output), "metadata": {"run_id": _run_id(), "feedback_tokens": []}})

    @app.post("/batch")
    @guarded
    async def batch(request: Request) -> Response:
        req = parse(BatchRequest, await request.body())
        inputs, options = [checked(x) for x in req.inputs], req.call_options()
        outputs = await run_request(lambda: runnable.abatch(inputs, max_concurrency=16, **options),
                                    request.receive, config.timeout_s)
        return JSONResponse({"output": [jsonable(o) for o in outputs],
                             "metadata": {"run_ids": [_run_id() for _ in outputs]}})

    @app.post("/stream")
    @guarded
    async def stream(request: Request) -> Response:
        req = parse(InvokeRequest, await request.body())
        return EventStream(_stream_events(runnable, checked(req.input), req.call_options()),
                           timeout_s=config.timeout_s, error_event=_error_event, heartbeat_s=config.heartbeat_s)
