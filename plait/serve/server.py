"""Running an app with uvicorn: in the foreground (``plait serve``) or in a background thread.

Both use uvloop and httptools when installed and shut down gracefully: on SIGINT/SIGTERM (or
``stop()``) the server stops accepting connections, ``/ready`` turns 503, and streams in flight
run to their end (up to ``graceful_timeout_s``) before the process exits.

Example::

    with ServerThread(create_app(model)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="none")
"""

from __future__ import annotations

import gc
import importlib.util
import socket
import threading
import time
from typing import Any

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def _uvicorn_config(app: Any, host: str, port: int, graceful_timeout_s: float, log_level: str,
                    access_log: bool = False) -> Any:
    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return uvicorn.Config(app, host=host, port=port, loop=loop, http=http, log_level=log_level,
                          timeout_graceful_shutdown=int(graceful_timeout_s), timeout_keep_alive=30,
                          backlog=4096, access_log=access_log)


def _draining_server(config: Any) -> Any:
    """A uvicorn server that marks the app as draining the moment shutdown starts."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            _mark_draining(config.app)
            super().handle_exit(sig, frame)

    return Server(config)


def _mark_draining(app: Any) -> None:
    state = getattr(getattr(app, "state", None), "plait", None)
    if state is not None:
        state.draining = True


def run_server(app: Any, host: str = "127.0.0.1", port: int = 8000, *, graceful_timeout_s: float = 30.0,
               log_level: str = "info", access_log: bool = False) -> None:
    """Serve ``app`` in the foreground until SIGINT/SIGTERM.

    On shutdown, streams in flight get ``graceful_timeout_s`` to finish before they are cut.
    """
    server = _draining_server(_uvicorn_config(app, host, port, graceful_timeout_s, log_level, access_log))
    # Everything loaded so far (modules, the app, model objects) lives as long as the process:
    # moving it out of the collector's view keeps the periodic full collections short, which
    # would otherwise stall every stream at once.
    gc.collect()
    gc.freeze()
    server.run()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerThread:
    """Serve an app from a background thread on 127.0.0.1 and a free port (tests, notebooks)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None, *,
                 graceful_timeout_s: float = 10.0, log_level: str = "warning") -> None:
        self.app = app
        self.host = host
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port or 0))  # bound here, so the port is ours before the thread starts
        self.port = int(self.sock.getsockname()[1])
        self.server = _draining_server(_uvicorn_config(app, host, self.port, graceful_timeout_s, log_level))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"The server on {self.url} did not start within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Shut down gracefully: streams in flight finish first."""
        _mark_draining(self.app)
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
