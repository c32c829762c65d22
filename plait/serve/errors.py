"""Errors in OpenAI's JSON format, so every OpenAI client turns them into its usual exceptions.

Every error the server sends, whatever the route, is ``{"error": {"message", "type", "param",
"code"}}`` with the status code OpenAI uses for the same problem (400 bad request, 401 bad key,
404 unknown model or route, 408 body too slow, 413 body too large, 415 not JSON, 429 saturated,
500 server fault, 502 upstream fault, 504 timeout). Messages say what was wrong and what to do;
only messages plait wrote for the client are sent, anything else is logged under an error id.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("plait.serve")

# status -> OpenAI error "type"
_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}


class APIError(Exception):
    """An error to send to the client as it is: status, message and optional OpenAI ``param``/``code``."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)


class ClientLeft(Exception):  # noqa: N818 (an event, like GeneratorExit)
    """The client disconnected before its answer was ready: nothing is sent, one line is logged."""


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error" if status < 500
                                                                      else "server_error"),
                      "param": param, "code": code}}


def error_bytes(status: int, message: str, **kw: Any) -> bytes:
    return json.dumps(error_body(status, message, **kw)).encode()


def error_id() -> str:
    """A short id that ties what a client was told to the server log's line about it."""
    return f"req_{uuid.uuid4().hex[:12]}"


def _upstream_error(exc: Any) -> APIError:
    """A re-served remote model failed: say what happened upstream, not what its URL or key is."""
    status, detail = exc.status, (exc.detail or "")[:500]
    log.warning("The upstream model server failed a request: %s", exc)
    if isinstance(exc, TimeoutError):
        return APIError(504, "The upstream model server did not answer in time; try again later.",
                        code="upstream_timeout")
    if status in (400, 422):
        return APIError(400, f"The upstream model server rejected the request: {detail}", param=exc.param,
                        code="upstream_bad_request")
    if status in (401, 403):
        return APIError(502, f"The upstream model server refused this server's credentials ({status}); "
                             "the operator must fix the upstream API key.", code="upstream_auth_error")
    if status == 404:
        return APIError(502, "The upstream model server does not know the model this server forwards to; "
                             "the operator must fix the model name.", code="upstream_not_found")
    if status == 429:
        return APIError(429, "The upstream model server is rate-limiting this server; retry later.",
                        code="upstream_rate_limited", headers={"retry-after": "5"})
    if status is None:
        return APIError(502, "The upstream model server could not be reached or sent an invalid reply.",
                        code="upstream_unavailable")
    return APIError(502, f"The upstream model server failed ({status}); try again later.", code="upstream_error")


_PATHS = re.compile(r"://|~/|(?<![\w.])/[\w.\-]+/|\b[A-Za-z]:\\")


def _plait_wrote(exc: BaseException) -> bool:
    """Raised by plait's own code (the innermost frame is in a ``plait`` module), naming no path or URL."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return module.startswith("plait.") and not _PATHS.search(str(exc))


def as_api_error(exc: BaseException) -> APIError:
    """Map any exception raised while serving to what the client is told.

    Only messages plait wrote for the client go out: :class:`APIError`, a prompt that does not
    fit the model's context window, a missing prompt variable, a ``ValueError``/``TypeError``
    raised by plait's own code (its input checks) whose text names no file or URL, and what a
    re-served remote model server answered (mapped to its status: a refused request stays 400, a
    timeout 504...). Any other exception is logged with a new error id, and the client gets a
    generic message with that id: 400 for ``ValueError``/``TypeError`` (a step refused its
    input), else 500.
    """
    if isinstance(exc, APIError):
        return exc
    from plait.prompts import MissingVariableError
    from plait.remote._openai import RemoteModelError

    if isinstance(exc, RemoteModelError):
        return _upstream_error(exc)
    if isinstance(exc, TimeoutError):
        return APIError(504, "The request took longer than the server's time limit; try a shorter "
                             "request or ask the operator to raise --timeout.", code="timeout")
    if isinstance(exc, MissingVariableError) or type(exc).__name__ == "ContextLengthError":
        log.info("Request rejected: %s", exc)
        code = "context_length_exceeded" if type(exc).__name__ == "ContextLengthError" else None
        return APIError(400, str(exc.args[0] if exc.args else exc), code=code)
    if isinstance(exc, (ValueError, TypeError)) and _plait_wrote(exc):
        log.info("Request rejected: %s: %s", type(exc).__name__, exc)
        return APIError(400, str(exc))
    ident = error_id()
    if isinstance(exc, (ValueError, TypeError)):
        log.warning("Request %s rejected by the served object: %s: %s", ident, type(exc).__name__, exc,
                    exc_info=exc)
        return APIError(400, f"The served model or chain rejected the request (error id {ident}); the "
                             "server log has the details.", code="invalid_request")
    log.error("Request %s failed", ident, exc_info=exc)
    return APIError(500, f"The server failed while running the model (error id {ident}); the details are "
                         "in the server log.", code="internal_error")


def guarded(route: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap a route so that any exception becomes an OpenAI error response.

    Done here rather than with a Starlette handler for ``Exception``: that one re-raises after
    answering, and uvicorn then closes the connection under the client's feet.
    """
    from starlette.responses import JSONResponse, Response

    @functools.wraps(route)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await route(*args, **kwargs)
        except ClientLeft:  # logged (one line) where it was noticed
            return Response(status_code=499)  # never sent: the connection is gone
        except Exception as exc:
            err = as_api_error(exc)
            return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    return wrapper
