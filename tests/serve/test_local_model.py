"""The bundled local model served and asked through the OpenAI SDK (slow: loads SmolLM2)."""

from __future__ import annotations

import openai
import pytest


@pytest.mark.slow
@pytest.mark.integration
def test_local_model_answers_through_the_server(serve):
    models = pytest.importorskip("plait.models")
    model = models.chat_model_from_spec("local")
    server = serve(model, name="local")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=300)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model="local", messages=question, max_tokens=20, temperature=0)
    assert "Paris" in r.choices[0].message.content
    assert r.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(model="local", messages=question, max_tokens=20,
                                                 temperature=0, stream=True))
    assert "Paris" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("stream", [False, True])
def test_local_model_stops_when_the_client_leaves(serve, stream):
    """Issue 18.2 with the bundled model: 1500 tokens asked, the client gone after a few; generation stops."""
    import json
    import socket
    import threading
    import time

    import httpx

    models = pytest.importorskip("plait.models")
    model = models.chat_model_from_spec("local")
    produced, stopped = [0], threading.Event()
    inner = model._stream

    def counting(messages, options):
        try:
            for chunk in inner(messages, options):
                produced[0] += 1
                yield chunk
        finally:
            stopped.set()

    model._stream = counting
    server = serve(model, name="local", max_concurrency=1)
    body = json.dumps({"model": "local", "messages": [{"role": "user", "content": "Write a very long story about a "
                       "dragon."}], "max_tokens": 1500, "temperature": 0.8, "seed": 1, "stream": stream}).encode()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    for _ in range(6000):
        if produced[0] >= 5:
            break
        time.sleep(0.01)
    s.close()
    assert stopped.wait(60), "the model kept generating after the client left"
    at_stop = produced[0]
    assert at_stop < 1500
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "local", "messages": [
        {"role": "user", "content": "Hi"}], "max_tokens": 3}, timeout=120)
    assert r.status_code == 200  # the slot was given back once the model had stopped
