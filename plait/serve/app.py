"""``create_app``: any plait chain or model behind an OpenAI-compatible HTTP API and a chat page.

Example::

    from plait.fake import FakeChatModel
    from plait.serve import create_app, run_server
    app = create_app(FakeChatModel(["Hello!"]), api_key="secret")
    run_server(app, port=8000)   # or: uvicorn.run(app); or: plait serve mymodule:chain

Routes: ``/v1/chat/completions``, ``/v1/models``, ``/v1/embeddings`` (when embeddings are served),
``/v1/images/generations`` (when an image model is served), ``/invoke``, ``/batch``, ``/stream``,
``/input_schema``, ``/output_schema``, ``/health`` (alive), ``/ready`` (warmed up and not
shutting down), and ``/`` (the web chat page).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from plait.embeddings import Embeddings
from plait.image_model import ImageModel
from plait.serve.config import ServeConfig
from plait.serve.errors import APIError, as_api_error, error_body
from plait.serve.generic_routes import add_generic_routes
from plait.serve.openai_routes import add_openai_routes
from plait.serve.security import APIKeyAuth, ConcurrencyLimit, HostCheck, JSONBody, allowed_hosts
from plait.serve.served import Served, ServeState
from plait.serve.streaming import RAW_SEND

log = logging.getLogger("plait.serve")


def create_app(runnable_or_model: Any, config: ServeConfig | None = None, *, embeddings: Embeddings | None = None,
               images: ImageModel | None = None, input_schema: Any = None, output_schema: Any = None,
               **settings: Any) -> FastAPI:
    """Build the FastAPI app serving ``runnable_or_model``.

    Args:
        runnable_or_model: a chat model, a chain (any Runnable), an image model, or an embeddings
            object. How each answers chat requests: see :mod:`plait.serve.adapters`.
        config: a :class:`ServeConfig`; or give its fields as keyword ``settings``
            (``api_key="..."``, ``max_concurrency=64``, ``input_key="question"``...).
        embeddings: also serve ``/v1/embeddings`` with this :class:`~plait.embeddings.Embeddings`.
        images: also serve ``/v1/images/generations`` with this :class:`~plait.image_model.ImageModel`.
        input_schema, output_schema: JSON schemas (or pydantic models) for the generic routes,
            where the derived ones are not what you want.
    """
    config = replace(config or ServeConfig(), **settings)
    served = Served(runnable_or_model, config, embeddings=embeddings, images=images)
    state = ServeState(allowed_hosts=allowed_hosts(config.allowed_hosts))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warm = asyncio.ensure_future(_warm_up(served, state))
        yield
        state.draining = True
        warm.cancel()

    app = _PlaitAPI(title="plait", version="0.1.0", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.plait = state
    app.state.served = served
    _add_error_handlers(app)
    add_openai_routes(app, served)
    add_generic_routes(app, served.target, config, input_schema=input_schema, output_schema=output_schema)
    _add_page_and_health(app, served, state)

    # Outermost last: Host check > CORS (answers preflights) > auth > JSON body (read whole, with
    # its time and size limits) > concurrency > routes.
    app.add_middleware(ConcurrencyLimit, limit=config.max_concurrency, retry_after_s=config.retry_after_s)
    app.add_middleware(JSONBody, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s)
    if config.api_key:
        app.add_middleware(APIKeyAuth, api_key=config.api_key)
    if config.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])
    app.add_middleware(HostCheck, allowed=state.allowed_hosts)
    return app


class _PlaitAPI(FastAPI):
    """FastAPI that leaves the server's ``send`` in the scope, for :class:`EventStream`'s fast path."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND] = send
        await super().__call__(scope, receive, send)


async def _warm_up(served: Served, state: ServeState) -> None:
    """Load weights before saying ready: ``warm_up()`` of each served object (containers forward it)."""
    try:
        for part in served.parts():
            await asyncio.to_thread(part.warm_up)
        state.ready = True
    except Exception as e:  # reported by /ready; requests still get the model's own error
        log.exception("warm-up failed")
        state.warm_up_error = f"{type(e).__name__}: {e}"


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        err = as_api_error(exc)
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            message = f"Unknown route {request.method} {request.url.path}; the OpenAI routes are under /v1/."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
        else:
            message = str(exc.detail)
        return JSONResponse(error_body(exc.status_code, message), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def validation_error(request: Request, exc: Exception) -> Response:
        return JSONResponse(error_body(400, "Invalid request: check the parameters against /openapi.json."),
                            status_code=400)

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, api_error)


def _add_page_and_health(app: FastAPI, served: Served, state: ServeState) -> None:
    page = resources.files("plait.serve").joinpath("static/index.html").read_bytes()

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return HTMLResponse(page, headers={"cache-control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204, headers={"cache-control": "max-age=86400"})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Response:
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if state.warm_up_error:  # the details are in the server log; this route is public
            return JSONResponse({"status": "failed", "error": "warm-up failed; see the server log"}, status_code=503)
        if not state.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ready", "models": served.model_ids()})
