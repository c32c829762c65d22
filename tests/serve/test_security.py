"""API keys, CORS, concurrency limit (429 + Retry-After) and per-request timeouts."""

from __future__ import annotations

import asyncio
import threading

import httpx
import openai
import pytest

from plait.fake import FakeChatModel
from plait.runnable import Lambda
from tests.serve.apps import slow_chat

USER = [{"role": "user", "content": "hi"}]


def test_api_key_required_and_checked(serve):
    server = serve(FakeChatModel(["secret answer"]), api_key="s3cret")
    body = {"model": "fake", "messages": USER}
    r = httpx.post(server.url + "/v1/chat/completions", json=body)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert "Bearer" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "secret answer" not in r.text
    for path in ("/v1/models", "/invoke", "/input_schema", "/docs", "/openapi.json"):
        assert httpx.get(server.url + path).status_code == 401, path
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    ok = openai.OpenAI(base_url=server.url + "/v1", api_key="s3cret", max_retries=0)
    assert ok.chat.completions.create(model="fake", messages=USER).choices[0].message.content == "secret answer"
    # the page and the health checks stay open (the page asks for the key itself)
    assert httpx.get(server.url + "/health").status_code == 200
    assert httpx.get(server.url + "/").status_code == 200


def test_cors_off_by_default_and_on_when_configured(serve):
    preflight = {"Origin": "http://example.com", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    off = serve(FakeChatModel(["x"]))
    r = httpx.options(off.url + "/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(off.url + "/v1/models", headers={"Origin": "http://example.com"})
    assert "access-control-allow-origin" not in r.headers

    on = serve(FakeChatModel(["x"]), cors_origins=["http://example.com"], api_key="k")
    r = httpx.options(on.url + "/v1/chat/completions", headers=preflight)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://example.com"
    r = httpx.get(on.url + "/v1/models", headers={"Origin": "http://example.com", "Authorization": "Bearer k"})
    assert r.headers["access-control-allow-origin"] == "http://example.com"
    with httpx.stream("POST", on.url + "/v1/chat/completions", json={"model": "fake", "messages": USER, "stream": True},
                      headers={"Origin": "http://example.com", "Authorization": "Bearer k"}) as r:
        assert r.headers["access-control-allow-origin"] == "http://example.com"  # streams get CORS too
        assert r.read().endswith(b"data: [DONE]\n\n")
    r = httpx.options(on.url + "/v1/chat/completions", headers={**preflight, "Origin": "http://evil.test"})
    assert r.headers.get("access-control-allow-origin") != "http://evil.test"


def test_saturated_server_answers_429_with_retry_after(serve):
    release = threading.Event()

    async def held_open(chunks):
        async for _ in chunks:
            pass
        yield "first "
        while not release.is_set():  # the stream stays in flight until the test lets it end
            await asyncio.sleep(0.02)
        yield "last"

    server = serve(Lambda(held_open), max_concurrency=1, retry_after_s=2)
    body = {"model": "plait", "messages": USER, "stream": True}
    first_token = threading.Event()
    texts: list[str] = []

    def long_stream() -> None:
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=30) as r:
            for line in r.iter_lines():
                first_token.set()
                if line:
                    texts.append(line)

    t = threading.Thread(target=long_stream)
    t.start()
    assert first_token.wait(10)
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "plait", "messages": USER})
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert r.json()["error"]["type"] == "rate_limit_error"
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
            model="plait", messages=USER)
    assert httpx.get(server.url + "/health").status_code == 200  # health is never limited
    release.set()
    t.join(20)
    assert texts[-1] == "data: [DONE]"
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "plait", "messages": USER})
    assert r.status_code == 200  # the slot is free again


def test_timeout_is_504_or_error_event(serve):
    async def slow(text: str) -> str:
        await asyncio.sleep(5)
        return "too late"

    server = serve(Lambda(slow), timeout_s=0.3)
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "plait", "messages": USER})
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "plait", "messages": USER, "stream": True})
    assert r.status_code == 504  # nothing was streamed yet: a plain HTTP error

    streaming = serve(slow_chat(), timeout_s=0.4)
    with httpx.stream("POST", streaming.url + "/v1/chat/completions",
                      json={"model": "fake", "messages": USER, "stream": True}) as r:
        assert r.status_code == 200
        raw = r.read().decode()
    assert '"content":"t0"' in raw and '"code": "timeout"' in raw and "[DONE]" not in raw
