"""Bad requests get 4xx in OpenAI's error format, failures no stack traces, and the server keeps serving."""

from __future__ import annotations

import socket

import httpx
import openai
import pytest

from plait.fake import FakeChatModel
from plait.runnable import Lambda
from plait.serve import ServerThread, create_app

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server():
    with ServerThread(create_app(FakeChatModel(["fine"]), max_body_bytes=4096)) as s:
        yield s


def post(server, body, path="/v1/chat/completions", **kw):
    raw = isinstance(body, (bytes, str))
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    return httpx.post(server.url + path, content=body if raw else None, json=None if raw else body,
                      headers=headers, **kw)


def assert_openai_error(r: httpx.Response, status: int, *words: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    for w in words:
        assert w in err["message"], err["message"]
    assert "Traceback" not in r.text and ".py" not in r.text
    return err


def still_serving(server) -> None:
    r = post(server, {"model": "fake", "messages": USER})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "fine"


@pytest.mark.parametrize("body, words", [
    (b"{not json", ["not valid JSON"]),
    (b"[1, 2]", ["JSON object"]),
    (b"[" * 2000 + b"]" * 2000, ["too deeply"]),
    ({"model": "fake"}, ["messages"]),
    ({"model": "fake", "messages": []}, ["messages"]),
    ({"model": "fake", "messages": "hello"}, ["messages"]),
    ({"model": "fake", "messages": USER, "temperature": "hot"}, ["temperature"]),
    ({"model": "fake", "messages": [{"role": "wizard", "content": "x"}]}, ["messages[0]", "wizard"]),
    ({"model": "fake", "messages": [{"role": "user", "content": 42}]}, ["messages[0].content"]),
    ({"model": "fake", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, ["text parts"]),
    ({"model": "fake", "messages": USER, "bogus_option": 1}, ["Unrecognized request argument", "bogus_option"]),
    ({"model": "fake", "messages": USER, "n": 3}, ["'n'"]),
    ({"model": "fake", "messages": USER, "tools": [{"type": "function", "function": {}}]}, ["name"]),
    ({"model": "fake", "messages": USER, "logit_bias": {"1": 2.0}}, ["logit_bias"]),
    ({"messages": USER}, ["model"]),
])
def test_bad_requests_are_400(server, body, words):
    assert_openai_error(post(server, body), 400, *words)
    still_serving(server)


def test_unknown_model_is_404(server):
    err = assert_openai_error(post(server, {"model": "gpt-4", "messages": USER}), 404, "gpt-4", "fake")
    assert err["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
            model="gpt-4", messages=USER)
    still_serving(server)


def test_unknown_route_and_method(server):
    assert_openai_error(httpx.get(server.url + "/v1/nothing"), 404, "/v1/nothing")
    assert_openai_error(httpx.get(server.url + "/v1/chat/completions"), 405, "GET")
    assert_openai_error(post(server, {"model": "fake", "input": "x"}, "/v1/embeddings"), 404, "embeddings")
    still_serving(server)


def test_huge_body_is_413_by_length_and_when_chunked(server):
    big = b'{"model": "fake", "messages": [{"role": "user", "content": "' + b"x" * 10_000 + b'"}]}'
    assert_openai_error(post(server, big, headers={"content-type": "application/json"}), 413, "4096 bytes")

    def chunks():
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]

    r = httpx.post(server.url + "/v1/chat/completions", content=chunks(),  # no Content-Length
                   headers={"content-type": "application/json"})
    assert_openai_error(r, 413, "limit")
    still_serving(server)


def test_oversized_upload_on_raw_socket_does_not_hang(server):
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50_000_000}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(head + b"{" * 1000)
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")
    still_serving(server)


def test_failing_model_is_500_without_details(serve):
    def broken(_):
        raise RuntimeError("secret internal path /srv/db.sqlite")

    server = serve(Lambda(broken))
    err = assert_openai_error(post(server, {"model": "plait", "messages": USER}), 500, "server log")
    assert "secret" not in err["message"]
    r = post(server, {"model": "plait", "messages": USER, "stream": True})  # fails before the first token
    assert_openai_error(r, 500)
    assert "secret" not in r.text


def test_chain_refuses_tools(serve):
    server = serve(Lambda(lambda q: q))
    body = {"model": "plait", "messages": USER, "tools": [{"type": "function", "function": {"name": "f"}}]}
    assert_openai_error(post(server, body), 400, "tools")


def test_errors_raised_by_a_chain_are_logged_not_sent(serve, caplog):
    """Issue 18.4: only messages plait wrote reach clients; the rest are logged under an error id."""
    def picky(text):
        raise ValueError("cannot open /home/alice/.ssh/id_rsa: permission denied")

    server = serve(Lambda(picky))
    with caplog.at_level("WARNING", logger="plait.serve"):
        err = assert_openai_error(post(server, {"model": "plait", "messages": USER}), 400, "error id req_")
    assert "ssh" not in err["message"] and "alice" not in err["message"]
    ident = err["message"].split("error id ")[1].split(")")[0]
    assert any(ident in r.getMessage() and "id_rsa" in r.getMessage() for r in caplog.records)
    # plait's own input checks still say what was wrong
    assert_openai_error(post(server, {"model": "plait", "messages": [{"role": "assistant", "content": "x"}]}), 400,
                        "user message")


def test_error_mid_stream_is_an_error_event(serve):
    async def breaks_midway(chunks):
        async for _ in chunks:
            pass
        yield "partial "
        raise RuntimeError("database went away at /srv/x")

    server = serve(Lambda(breaks_midway))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    got = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(model="plait", messages=USER, stream=True):
            got.extend(c.delta.content for c in chunk.choices if c.delta.content)
    assert got == ["partial "]
    assert "server log" in str(info.value) and "/srv/x" not in str(info.value)
    with httpx.stream("POST", server.url + "/v1/chat/completions",
                      json={"model": "plait", "messages": USER, "stream": True}) as r:
        raw = r.read().decode()
    assert '"error"' in raw and "[DONE]" not in raw  # a broken stream never looks complete
