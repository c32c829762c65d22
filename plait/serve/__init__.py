"""plait.serve: any chain or model behind an OpenAI-compatible HTTP API, plus a web chat page.

``create_app(runnable_or_model, ...)`` builds the FastAPI app; ``run_server`` / ``ServerThread``
run it with uvicorn. FastAPI is imported only when these are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plait._lazy import lazy_exports

if TYPE_CHECKING:
    from plait.serve.app import create_app
    from plait.serve.config import ServeConfig
    from plait.serve.server import ServerThread, run_server

_LAZY = {"create_app": "plait.serve.app", "ServeConfig": "plait.serve.config",
         "ServerThread": "plait.serve.server", "run_server": "plait.serve.server"}

__all__ = ["ServeConfig", "ServerThread", "create_app", "run_server"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
