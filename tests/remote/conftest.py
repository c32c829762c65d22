"""Fixtures for the remote backends: a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plait.remote.openai_chat import OpenAIChatModel
from tests.remote.openai_server import OpenAIServer


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as s:
        yield s


@pytest.fixture
def chat(server: OpenAIServer) -> OpenAIChatModel:
    """A chat model on the test server; short timeouts so fault tests stay quick."""
    return OpenAIChatModel("test-model", base_url=server.base_url, api_key=server.api_key,
                           timeout=5.0, max_retries=2)
