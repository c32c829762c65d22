"""The server under hostile clients (issue 18, items 1-8), each probe on a real uvicorn server and real sockets."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from plait.chat_model import ChatModel
from plait.fake import FakeChatModel
from plait.messages import AssistantChunk, Message
from plait.serve import ServerThread, create_app, run_server

USER = [{"role": "user", "content": "hi"}]
BODY = {"model": "fake", "messages": USER}


class GatedModel(ChatModel):
    """A slow local-style model: each token waits for ``gate`` (or ``delay`` s); records what it made.

    Only a sync ``_stream``: the server drives it from a worker thread, as it does a local model.
    """

    can_stream = True
    model_name = "fake"

    def __init__(self, tokens: int = 1000, delay: float = 0.0, gated: bool = False) -> None:
        super().__init__()
        self.tokens, self.delay, self.gated = tokens, delay, gated
        self.gate = threading.Semaphore(0)
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.produced = 0

    def _generate(self, messages: list[Message], options: dict[str, Any]) -> Any:
        raise AssertionError("the server streams (so that it can stop the model)")

    def _stream(self, messages: list[Message], options: dict[str, Any]) -> Iterator[AssistantChunk]:
        try:
            for i in range(self.tokens):
                if i:  # one decode step
                    if self.gated:
                        assert self.gate.acquire(timeout=30), "the test never released the step"
                    elif self.delay:
                        time.sleep(self.delay)
                self.produced += 1
                self.started.set()
                yield AssistantChunk(content=f"t{i} ")
            yield AssistantChunk(finish_reason="stop")
        finally:
            self.stopped.set()


def raw_request(port: int, body: dict[str, Any] | bytes, *, host: str = "127.0.0.1",
                content_type: str = "application/json", path: str = "/v1/chat/completions") -> socket.socket:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
              f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return s


def read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def wait_for_status(url: str, status: int, body: dict[str, Any] = BODY, tries: int = 200) -> httpx.Response:
    for _ in range(tries):
        r = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
        if r.status_code == status:
            return r
        time.sleep(0.05)
    raise AssertionError(f"never got {status}; last: {r.status_code} {r.text}")


# --- 1. Host allow-list and JSON-only bodies ------------------------------------------------------
def test_rebinding_host_and_non_json_bodies_are_refused(serve):
    server = serve(FakeChatModel(["secret"]))
    url = server.url + "/v1/chat/completions"
    r = httpx.post(url, json=BODY, headers={"Host": "rebind.attacker.example"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host" and "secret" not in r.text
    assert httpx.get(server.url + "/v1/models", headers={"Host": "rebind.attacker.example:80"}).status_code == 400
    for ctype in ("text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": ctype} if ctype else {}
        r = httpx.post(url, content=json.dumps(BODY), headers=headers)
        assert r.status_code == 415, ctype
        assert r.json()["error"]["message"].startswith("Send the request body as JSON")
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "localhost", "LOCALHOST."):
        assert httpx.post(url, json=BODY, headers={"Host": host}).status_code == 200, host
    r = httpx.post(url, content=json.dumps(BODY), headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200


def test_allowed_hosts_and_the_ipv6_loopback(serve):
    server = serve(FakeChatModel(["ok"]), allowed_hosts=["my-box.lan"])
    url = server.url + "/v1/chat/completions"
    assert httpx.post(url, json=BODY, headers={"Host": "my-box.lan:8000"}).status_code == 200
    assert httpx.post(url, json=BODY, headers={"Host": "[::1]:8000"}).status_code == 200
    assert httpx.post(url, json=BODY, headers={"Host": "other.lan"}).status_code == 400
    anything = serve(FakeChatModel(["ok"]), allowed_hosts=["*"])
    assert httpx.post(anything.url + "/v1/chat/completions", json=BODY,
                      headers={"Host": "whatever.example"}).status_code == 200


# --- 2. Cancellation: a client that leaves or a timeout stops the model; the slot waits for it ------
def _wait_for_log(caplog, text: str) -> list[logging.LogRecord]:
    for _ in range(600):
        found = [r for r in caplog.records if text in r.getMessage()]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no log line with {text!r}")


def _step_until_stopped(model: GatedModel) -> None:
    """Let the model's steps go, one at a time, until it stops (it must stop at the next token)."""
    for _ in range(1000):
        model.gate.release()
        if model.stopped.wait(0.05):
            return
    raise AssertionError("the model never stopped")


@pytest.mark.parametrize("stream", [False, True])
def test_client_leaving_stops_generation_and_holds_the_slot_until_stopped(serve, caplog, stream):
    model = GatedModel(gated=True)
    server = serve(model, max_concurrency=1)
    with caplog.at_level(logging.INFO, logger="plait.serve"):
        s = raw_request(server.port, {**BODY, "stream": stream, "max_tokens": 1000})
        assert model.started.wait(30)
        s.close()  # the client leaves while the model is inside a decode step
        left = _wait_for_log(caplog, "client left")
        # The server knows, but the model cannot stop inside its step: until it has, the request
        # keeps its concurrency slot.
        r = httpx.post(server.url + "/v1/chat/completions", json=BODY)
        assert r.status_code == 429 and not model.stopped.is_set()
        _step_until_stopped(model)
    assert model.produced <= 3, model.produced  # the token of the step in flight (and at most one more)
    assert len(left) == 1 and left[0].exc_info is None  # one line, no traceback
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    model.gated = False
    wait_for_status(server.url, 200)  # the slot is free again


def test_timeout_stops_a_non_streaming_generation_before_the_504(serve):
    model = GatedModel(tokens=100_000, delay=0.01)
    server = serve(model, timeout_s=0.5)
    r = httpx.post(server.url + "/v1/chat/completions", json=BODY, timeout=60)
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    assert model.stopped.is_set()  # the answer waited for the model to stop
    produced = model.produced
    time.sleep(0.2)
    assert model.produced == produced < 100_000


# --- 3. Slow clients: header, body and idle timeouts; a connection cap ----------------------------
def test_partial_headers_are_closed_after_the_header_timeout(serve):
    server = serve(FakeChatModel(["ok"]), header_timeout_s=0.3)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
    assert s.recv(100) == b""  # closed by the server
    s.close()


def test_a_trickled_body_gets_408_and_never_holds_a_model_slot(serve):
    server = serve(FakeChatModel(["ok"]), body_timeout_s=0.5, max_concurrency=1)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000\r\n\r\n{\"model\":")
    r = httpx.post(server.url + "/v1/chat/completions", json=BODY)  # while the body trickles
    assert r.status_code == 200
    reply = read_all(s)
    assert reply.startswith(b"HTTP/1.1 408") and b'"code": "timeout"' in reply
    s.close()


def test_idle_keep_alive_connections_are_closed(serve):
    server = serve(FakeChatModel(["ok"]), idle_timeout_s=0.3)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    assert s.recv(100) == b""  # then closed while idle
    s.close()


def test_connection_cap_closes_idle_connections_for_new_ones(serve):
    server = serve(FakeChatModel(["ok"]), max_connections=8, header_timeout_s=60)
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(20)]
    try:
        for _ in range(3):
            assert httpx.post(server.url + "/v1/chat/completions", json=BODY).status_code == 200
        closed = 0
        for s in idle:
            s.settimeout(0.5)
            try:
                closed += s.recv(1) == b""
            except TimeoutError:
                pass
        assert closed >= 12  # the oldest idle ones made room (8 may stay open)
    finally:
        for s in idle:
            s.close()


# --- 4 and 5. What reaches clients; numbers in range -------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("temperature", float("nan")), ("temperature", float("inf")), ("temperature", 2.5), ("temperature", -1),
    ("top_p", 0), ("top_p", 1.5), ("seed", 2**70), ("max_tokens", 0), ("presence_penalty", 3),
    ("frequency_penalty", float("-inf")), ("n", 0), ("top_logprobs", 30), ("stream", "yes"),
    ("logit_bias", {"5": 1000}),
])
def test_numbers_are_finite_and_in_range(serve, field, value):
    server = serve(FakeChatModel(["ok"]))
    body = json.dumps({**BODY, field: value})  # Python writes NaN/Infinity, as a hostile client may
    r = httpx.post(server.url + "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["param"].startswith(field), r.text
    assert "Overflow" not in r.text and "tensor" not in r.text


# --- 6. The Python API applies the CLI's rule -----------------------------------------------------
def test_python_api_refuses_a_keyless_server_on_all_interfaces():
    with pytest.raises(ValueError, match="API key"):
        run_server(create_app(FakeChatModel(["x"])), host="0.0.0.0", port=1)
    with pytest.raises(ValueError, match="API key"):
        ServerThread(create_app(FakeChatModel(["x"])), host="0.0.0.0")
    with ServerThread(create_app(FakeChatModel(["x"]), api_key="k"), host="0.0.0.0") as server:
        r = httpx.post(f"http://127.0.0.1:{server.port}/v1/chat/completions", json=BODY,
                       headers={"Authorization": "Bearer k"})
        assert r.status_code == 200


# --- 7. Requests that are not HTTP get OpenAI's error JSON too -------------------------------------
@pytest.mark.parametrize("head", [
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n",
    b"NOT HTTP AT ALL\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
])
def test_malformed_http_gets_a_json_400(serve, head):
    server = serve(FakeChatModel(["ok"]))
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(head)
        reply = read_all(s)
    status, _, rest = reply.partition(b"\r\n")
    assert status == b"HTTP/1.1 400 Bad Request"
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "invalid_http" and body["error"]["type"] == "invalid_request_error"


# --- 8. A re-served remote model: upstream errors mapped to what happened ------------------------
def test_upstream_errors_are_mapped_to_what_happened(serve, upstream):
    from plait.remote.openai_chat import OpenAIChatModel

    model = OpenAIChatModel("test-model", base_url=upstream.base_url, api_key=upstream.api_key, max_retries=0,
                            timeout=3)
    server = serve(model, name="test-model")
    url = server.url + "/v1/chat/completions"
    body = {"model": "test-model", "messages": USER}
    upstream.fault("status", status=400, message="'messages' is too long for this model")
    r = httpx.post(url, json=body)
    assert r.status_code == 400 and "too long for this model" in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "upstream_bad_request" and upstream.base_url not in r.text
    upstream.fault("latency", delay=5.0)
    r = httpx.post(url, json=body, timeout=30)
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    wrong_key = OpenAIChatModel("test-model", base_url=upstream.base_url, api_key="wrong", max_retries=0)
    server2 = serve(wrong_key, name="test-model")
    r = httpx.post(server2.url + "/v1/chat/completions", json=body)
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_auth_error"
    assert "wrong" not in r.text and upstream.base_url not in r.text
    for stream in (False, True):  # and it still answers
        r = httpx.post(url, json={**body, "stream": stream})
        assert r.status_code == 200
