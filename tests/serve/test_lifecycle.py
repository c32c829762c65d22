"""Client disconnects stop generation; health/readiness; graceful shutdown finishes streams in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from plait.fake import FakeChatModel
from plait.prompts import ChatPromptTemplate
from plait.runnable import Lambda, Runnable
from plait.serve import ServerThread, create_app
from plait.serve.server import free_port
from tests.serve.apps import slow_chat

USER = [{"role": "user", "content": "hi"}]
STREAM = {"model": "fake", "messages": USER, "stream": True}


class CountingAsyncModel(FakeChatModel):
    """The fake model, counting the chunks it has produced (its async stream is what the server drives)."""

    def __init__(self) -> None:
        super().__init__([" ".join(f"t{i}" for i in range(60))], delay=0.03)
        self.produced = 0

    async def _astream(self, messages, options):
        async for chunk in super()._astream(messages, options):
            self.produced += 1
            yield chunk


class CountingSyncStream(Runnable[str, str]):
    """A chain step with only a sync ``stream`` (driven from a worker thread by the server)."""

    def __init__(self) -> None:
        self.produced = 0

    def invoke(self, input: str, **kwargs: Any) -> str:
        return "".join(self.stream(input))

    def stream(self, input: str, **kwargs: Any) -> Iterator[str]:
        for i in range(60):
            time.sleep(0.03)
            self.produced += 1
            yield f"w{i} "


def _read_some_then_disconnect(url: str, body: dict[str, Any], events: int) -> None:
    with httpx.Client(timeout=10) as client, client.stream("POST", url + "/v1/chat/completions", json=body) as r:
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                seen += 1
                if seen >= events:
                    break  # leaving the block closes the connection mid-stream


def _assert_stops(target: Any) -> None:
    deadline = time.monotonic() + 3
    before = -1
    while time.monotonic() < deadline:  # wait until the count is stable
        time.sleep(0.2)
        if target.produced == before:
            break
        before = target.produced
    time.sleep(0.3)
    assert target.produced == before, "the model kept generating after the client left"
    assert target.produced < 30, f"generated {target.produced} of 60 tokens for a client that read 4"


def test_disconnect_stops_async_model(serve):
    model = CountingAsyncModel()
    server = serve(model)
    _read_some_then_disconnect(server.url, STREAM, 4)
    _assert_stops(model)
    assert httpx.get(server.url + "/ready").status_code == 200


def test_disconnect_stops_sync_stream_in_thread(serve):
    step = CountingSyncStream()
    server = serve(step)
    _read_some_then_disconnect(server.url, {**STREAM, "model": "plait"}, 4)
    _assert_stops(step)


def test_disconnect_on_generic_stream_route(serve):
    model = CountingAsyncModel()
    server = serve(model)
    with httpx.Client(timeout=10) as client, client.stream("POST", server.url + "/stream", json={"input": "hi"}) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i > 6:
                break
    _assert_stops(model)


def _ready_status(url: str, leave: str, timeout: float = 10.0) -> httpx.Response:
    """Poll /ready until its status is no longer ``leave``."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(url + "/ready")
        if r.json()["status"] != leave or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def test_health_and_readiness_follow_warm_up(serve):
    release = threading.Event()

    class SlowToLoad(FakeChatModel):
        loaded = False

        def warm_up(self) -> None:  # the chain forwards warm_up to it before /ready says ready
            release.wait(10)
            SlowToLoad.loaded = True

    server = serve(ChatPromptTemplate.from_messages([("user", "{q}")]) | SlowToLoad(["ok"]), name="fake")
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    r = httpx.get(server.url + "/ready")
    assert r.status_code == 503 and r.json()["status"] == "starting"
    release.set()
    r = _ready_status(server.url, "starting")
    assert r.status_code == 200 and r.json()["models"] == ["fake"] and SlowToLoad.loaded

    class Broken(FakeChatModel):
        def warm_up(self) -> None:
            raise FileNotFoundError("weights missing at /models/x")

    broken = serve(Broken(["ok"]))
    r = _ready_status(broken.url, "starting")
    assert r.status_code == 503 and r.json()["status"] == "failed" and "/models" not in r.text


def test_warm_up_reaches_the_embeddings_and_the_image_model_too(serve):
    from plait.remote.openai_images import OpenAIImageModel
    from tests.serve.apps import LetterCounts

    warmed: list[str] = []

    class Letters(LetterCounts):
        def warm_up(self) -> None:
            warmed.append("embeddings")

    class Chat(FakeChatModel):
        def warm_up(self) -> None:
            warmed.append("chat")

    server = serve(Chat(["ok"]), embeddings=Letters())
    assert _ready_status(server.url, "starting").status_code == 200
    assert warmed == ["chat", "embeddings"]
    # the remote image model makes its client in warm_up: with no API key for api.openai.com that fails there
    missing_key = OpenAIImageModel("gpt-image-1", base_url="https://api.openai.com/v1")
    missing_key.settings.api_key = None  # as with no OPENAI_API_KEY set
    broken = serve(Chat(["ok"]), images=missing_key)
    r = _ready_status(broken.url, "starting")
    assert r.status_code == 503 and r.json() == {"status": "failed", "error": "warm-up failed; see the server log"}


def test_graceful_stop_finishes_stream_in_flight():
    server = ServerThread(create_app(slow_chat())).start()  # 24 tokens, 50 ms apart
    lines: list[str] = []
    started = threading.Event()

    def consume() -> None:
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=STREAM, timeout=30) as r:
            for line in r.iter_lines():
                started.set()
                if line:
                    lines.append(line)

    t = threading.Thread(target=consume)
    t.start()
    assert started.wait(10)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    time.sleep(0.3)
    assert server.app.state.plait.draining  # /ready would say 503 now
    t.join(20)
    stopper.join(20)
    assert lines[-1] == "data: [DONE]"
    assert sum(1 for x in lines if '"delta":{"content":' in x) == 24


def test_cli_serves_and_sigterm_drains_streams(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "plait.cli", "serve", "tests.serve.apps:slow_chat",
                             "--port", str(port), "--log-level", "warning"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        lines: list[str] = []
        with httpx.stream("POST", url + "/v1/chat/completions", json=STREAM, timeout=30) as r:
            for line in r.iter_lines():
                if not lines:
                    proc.send_signal(signal.SIGTERM)  # shut down while the stream is in flight
                if line:
                    lines.append(line)
        assert lines[-1] == "data: [DONE]"
        # uvicorn re-raises the captured SIGTERM once drained, so the exit looks like a plain SIGTERM
        assert proc.wait(15) in (0, -signal.SIGTERM)
        _, err = proc.communicate()
        assert "serving fake on http://127.0.0.1" in err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_slow_first_token_sends_heartbeats_clients_skip(serve):
    import asyncio

    import openai

    async def slow_start(chunks):
        async for _ in chunks:
            pass
        await asyncio.sleep(0.5)
        yield "late but fine"

    server = serve(Lambda(slow_start), heartbeat_s=0.1)
    with httpx.stream("POST", server.url + "/v1/chat/completions", json={**STREAM, "model": "plait"}) as r:
        raw = r.read().decode()
    assert raw.startswith(": waiting for the model\n\n") and raw.endswith("data: [DONE]\n\n")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    chunks = client.chat.completions.create(model="plait", messages=USER, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "late but fine"

    async def slow_failure(chunks):
        async for _ in chunks:
            pass
        await asyncio.sleep(0.3)
        raise RuntimeError("backend gone")
        yield  # an async generator

    failing = serve(Lambda(slow_failure), heartbeat_s=0.1)
    client = openai.OpenAI(base_url=failing.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIError, match="server log"):  # after heartbeats: an error event
        list(client.chat.completions.create(model="plait", messages=USER, stream=True))
