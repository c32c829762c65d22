"""Fixtures: real uvicorn servers on 127.0.0.1 (free port, background thread) serving plait apps, and
the test OpenAI server (tests/remote/openai_server.py) as an upstream for plait's remote backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from plait.serve import ServerThread, create_app
from tests.remote.openai_server import OpenAIServer


@pytest.fixture
def serve() -> Iterator[Callable[..., ServerThread]]:
    """``serve(target, **settings)`` starts a server for ``create_app(target, **settings)``; stopped at teardown."""
    servers: list[ServerThread] = []

    def start(target: Any, **settings: Any) -> ServerThread:
        server = ServerThread(create_app(target, **settings)).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def upstream() -> Iterator[OpenAIServer]:
    """An OpenAI-compatible server with the models test-model, test-embed and test-image."""
    with OpenAIServer() as s:
        yield s
