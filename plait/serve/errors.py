"""Errors in OpenAI's JSON format, so every OpenAI client turns them into its usual exceptions.

Every error the server sends, whatever the route, is ``{"error": {"message", "type", "param",
"code"}}`` with the status code OpenAI uses for the same problem (400 bad request, 401 bad key,
404 unknown model or route, 413 body too large, 429 saturated, 500 server fault, 504 timeout).
Messages say what was wrong and what to do; stack traces are logged, never sent.
"""

from __future__ import annotations

import functools
import json
import logging
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
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
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


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error" if status < 500
                                                                      else "server_error"),
                      "param": param, "code": code}}


def error_bytes(status: int, message: str, **kw: Any) -> bytes:
    return json.dumps(error_body(status, message, **kw)).encode()


def as_api_error(exc: BaseException) -> APIError:
    """Map any exception raised while serving to what the client is told.

    Errors the client caused (bad input a step rejected with ``ValueError``/``TypeError``, a
    missing prompt variable) are 400 with their message; anything else is a 500 with a generic
    message, and the traceback goes to the server log only.
    """
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, TimeoutError):
        return APIError(504, "The request took longer than the server's time limit; try a shorter "
                             "request or ask the operator to raise --timeout.", code="timeout")
    from plait.prompts import MissingVariableError

    if isinstance(exc, (ValueError, TypeError, MissingVariableError)):
        # Input problems raised by chain steps: their messages name the problem, not internals.
        log.info("Request rejected by the served object: %s: %s", type(exc).__name__, exc)
        return APIError(400, str(exc) or type(exc).__name__)
    log.error("Error while serving a request", exc_info=exc)
    return APIError(500, "The server failed while running the model; the details are in the server log.",
                    code="internal_error")


def guarded(route: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap a route so that any exception becomes an OpenAI error response.

    Done here rather than with a Starlette handler for ``Exception``: that one re-raises after
    answering, and uvicorn then closes the connection under the client's feet.
    """
    from starlette.responses import JSONResponse

    @functools.wraps(route)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await route(*args, **kwargs)
        except Exception as exc:
            err = as_api_error(exc)
            return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    return wrapper
