"""Generic routes for any Runnable: ``/invoke``, ``/batch``, ``/stream`` and their JSON schemas.

- ``POST /invoke`` ``{"input": X, "options": {...}}`` -> ``{"output": Y}``
- ``POST /batch`` ``{"inputs": [X, ...], "options": {...}}`` -> ``{"output": [Y, ...]}``
- ``POST /stream`` ``{"input": X}`` -> server-sent events ``event: data`` (one JSON chunk each),
  then ``event: end``; an error after the start is ``event: error`` with an OpenAI error object.
- ``GET /input_schema``, ``GET /output_schema``: the JSON schemas (see :mod:`plait.serve.schemas`).

The input is checked against the derived input type (and converted: a JSON object becomes the
pydantic model the runnable takes); outputs go through :func:`plait.serve.convert.jsonable`.
``options`` are call options (e.g. ``temperature`` for a chat model); a chain takes none.
"""

from __future__ import annotations

import asyncio
import json
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
from plait.serve.schemas import InputCheck, io_types, json_schema
from plait.serve.streaming import EventStream

MAX_BATCH = 256


class InvokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: Any
    options: dict[str, Any] = Field(default_factory=dict)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[Any] = Field(max_length=MAX_BATCH)
    options: dict[str, Any] = Field(default_factory=dict)


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
        async with asyncio.timeout(config.timeout_s):
            output = await runnable.ainvoke(checked(req.input), **req.options)
        return JSONResponse({"output": jsonable(output)})

    @app.post("/batch")
    @guarded
    async def batch(request: Request) -> Response:
        req = parse(BatchRequest, await request.body())
        inputs = [checked(x) for x in req.inputs]
        async with asyncio.timeout(config.timeout_s):
            outputs = await runnable.abatch(inputs, max_concurrency=16, **req.options)
        return JSONResponse({"output": [jsonable(o) for o in outputs]})

    @app.post("/stream")
    @guarded
    async def stream(request: Request) -> Response:
        req = parse(InvokeRequest, await request.body())
        return EventStream(_stream_events(runnable, checked(req.input), req.options),
                           timeout_s=config.timeout_s, error_event=_error_event, heartbeat_s=config.heartbeat_s)
