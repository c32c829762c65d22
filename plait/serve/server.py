"""Running an app with uvicorn: in the foreground (``plait serve``) or in a background thread.

Both use uvloop and httptools when installed and shut down gracefully: on SIGINT/SIGTERM (or
``stop()``) the server stops accepting connections, ``/ready`` turns 503, and streams in flight
run to their end (up to ``graceful_timeout_s``) before the process exits.

Both apply the app's :class:`~plait.serve.config.ServeConfig` at the connection level: a
connection must send each request's headers within ``header_timeout_s`` (with httptools; plain
h11 has no such timer), an idle keep-alive connection is closed after ``idle_timeout_s``, at most
``max_connections`` stay open (a new one past the cap closes the oldest idle one), and a request
that is not valid HTTP gets a 400 in OpenAI's error format. And both refuse to serve without an
API key on an address other than loopback, as ``plait serve`` does.

Example::

    with ServerThread(create_app(model)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="none")
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import resource
import socket
import threading
import time
from typing import Any

from plait.serve.config import ServeConfig

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
log = logging.getLogger("plait.serve")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def exposure_error(host: str, api_key: str | None) -> str | None:
    """Why serving on ``host`` without a key is refused (``None``: it is allowed)."""
    if is_loopback(host) or api_key:
        return None
    return (f"{host} is reachable from other machines: set an API key (--api-key, $PLAIT_API_KEY, or "
            "create_app(..., api_key=...)); clients then send 'Authorization: Bearer KEY'")


def _serve_config(app: Any) -> ServeConfig:
    served = getattr(getattr(app, "state", None), "served", None)
    return getattr(served, "config", None) or ServeConfig()


def _refuse_open(app: Any, host: str) -> ServeConfig:
    """The app's config; raises ValueError for a key-less app on a non-loopback address."""
    config = _serve_config(app)
    problem = exposure_error(host, config.api_key)
    if problem and getattr(getattr(app, "state", None), "served", None) is not None:
        raise ValueError(f"Refusing to serve without an API key: {problem}")
    return config


def default_max_connections() -> int:
    """1024, or fewer when the process may open fewer files (room is left for models and logs)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(8, min(1024, soft - 64))


def _protocol(http: str, config: ServeConfig) -> Any:
    """uvicorn's HTTP protocol with a header timer, a connection cap and 400s in OpenAI's format."""
    from plait.serve.errors import error_bytes

    Base: Any
    if http == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base
    header_timeout = config.header_timeout_s
    cap = config.max_connections or default_max_connections()

    class Protocol(Base):  # type: ignore[misc,valid-type]
        connections: set[Any]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.opened = time.monotonic()
            self.header_timer: Any = None
            if len(self.connections) > cap:
                self._make_room()
            self._arm()

        def _make_room(self) -> None:
            idle = [c for c in self.connections if c is not self and (c.cycle is None or c.cycle.response_complete)]
            victim = min(idle, key=lambda c: getattr(c, "opened", 0.0)) if idle else self
            log.info("connection cap (%d) reached: closing the %s", cap,
                     "oldest idle connection" if victim is not self else "new connection")
            victim.transport.close()

        def _arm(self) -> None:
            if self.header_timer is None and http == "httptools" and not self.transport.is_closing():
                self.header_timer = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _disarm(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def _headers_too_slow(self) -> None:
            self.header_timer = None
            if not self.transport.is_closing():
                log.info("closed a connection that sent no complete request headers within %g s", header_timeout)
                self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            body = error_bytes(400, "The request is not valid HTTP (its request line, a header or the "
                                    "Content-Length is malformed).", code="invalid_http")
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                                 b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
                                 + body)
            self.transport.close()

    return Protocol


def _uvicorn_config(app: Any, host: str, port: int, graceful_timeout_s: float, log_level: str,
                    access_log: bool = False) -> Any:
    import uvicorn

    config = _refuse_open(app, host)
    state = getattr(getattr(app, "state", None), "plait", None)
    if state is not None:  # the name the server is bound to is a Host it answers to
        from plait.serve.security import host_name

        state.allowed_hosts.add(host_name(host))
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return uvicorn.Config(app, host=host, port=port, loop=loop, http=_protocol(http, config), log_level=log_level,
                          timeout_graceful_shutdown=int(graceful_timeout_s), timeout_keep_alive=config.idle_timeout_s,  # type: ignore[arg-type]
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
        _refuse_open(app, host)
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
