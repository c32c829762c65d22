"""Faults on the wire: retries that help, errors that say what to fix, streams that break off."""

from __future__ import annotations

import time

import pytest

from plait.remote._openai import RemoteModelError, RemoteTimeoutError, StreamInterruptedError
from plait.remote.openai_chat import OpenAIChatModel
from tests.remote.openai_server import OpenAIServer


def attempts(server: OpenAIServer) -> int:
    return len(server.chat_requests())


def test_429_is_retried_after_the_retry_after_delay(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.fault("status", status=429, retry_after=1, message="Rate limit reached")
    start = time.perf_counter()
    assert chat.invoke("hello").content == "You said: hello"
    assert time.perf_counter() - start >= 0.95  # waited as told, not the 0.5 s default backoff
    assert attempts(server) == 2


async def test_429_is_retried_async(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.fault("status", status=429, retry_after=0.2)
    assert (await chat.ainvoke("hello")).content == "You said: hello"
    assert attempts(server) == 2


def test_5xx_and_dropped_connections_are_retried(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.fault("status", status=503)
    server.fault("drop")
    assert chat.invoke("hello").content == "You said: hello"
    assert attempts(server) == 3


def test_persistent_5xx_gives_up_with_a_clear_error(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.fault("status", status=500, times=3, message="the GPU caught fire")
    with pytest.raises(RemoteModelError, match=r"server error \(after 2 retries\).*the GPU caught fire") as err:
        chat.invoke("hello")
    assert err.value.status == 500
    assert attempts(server) == 3


@pytest.mark.parametrize(("model", "api_key", "status", "advice"), [
    ("test-model", "wrong-key", 401, "OPENAI_API_KEY"),
    ("no-such-model", None, 404, r"no model 'no-such-model'.*/models lists them"),
])
def test_client_errors_are_not_retried(server: OpenAIServer, model: str, api_key: str | None, status: int,
                                       advice: str) -> None:
    chat = OpenAIChatModel(model, base_url=server.base_url, api_key=api_key or server.api_key, max_retries=3)
    with pytest.raises(RemoteModelError, match=advice) as err:
        chat.invoke("hello")
    assert err.value.status == status
    assert attempts(server) == 1


def test_bad_request_names_the_parameter(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    with pytest.raises(RemoteModelError, match=r"parameter 'temperature'.*not between 0 and 2") as err:
        chat.invoke("hello", temperature=3.5)
    assert err.value.status == 400
    assert attempts(server) == 1


def test_slow_server_times_out(server: OpenAIServer) -> None:
    chat = OpenAIChatModel("test-model", base_url=server.base_url, api_key=server.api_key, timeout=0.3,
                           max_retries=0)
    server.fault("latency", delay=1.5)
    start = time.perf_counter()
    with pytest.raises(RemoteTimeoutError, match="within 0.3 s"):
        chat.invoke("hello")
    assert time.perf_counter() - start < 1.2


def test_latency_under_the_timeout_is_fine(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.fault("latency", delay=0.3)
    assert chat.invoke("hello").content == "You said: hello"
    assert attempts(server) == 1


@pytest.mark.parametrize("fault", ["drop_mid_stream", "truncate_stream", "malformed_sse"])
def test_a_stream_cut_midway_raises(chat: OpenAIChatModel, server: OpenAIServer, fault: str) -> None:
    server.fault(fault)
    got: list[str] = []
    with pytest.raises(StreamInterruptedError, match="incomplete"):
        for chunk in chat.stream("one two three four five six seven eight"):
            got.append(chunk.content)
    assert "".join(got).startswith("You said:")  # the first part did arrive before the error
    assert attempts(server) == 1  # not retried: chunks were already handed out


@pytest.mark.parametrize("fault", ["drop_mid_stream", "truncate_stream"])
async def test_a_stream_cut_midway_raises_async(chat: OpenAIChatModel, server: OpenAIServer, fault: str) -> None:
    server.fault(fault)
    with pytest.raises(StreamInterruptedError):
        async for _ in chat.astream("one two three four five six seven eight"):
            pass


def test_malformed_json_reply_is_a_clear_error(chat: OpenAIChatModel, server: OpenAIServer) -> None:
    server.fault("malformed_json")
    with pytest.raises(RemoteModelError, match="not valid OpenAI-format JSON"):
        chat.invoke("hello")


def test_unreachable_server_says_so(server: OpenAIServer) -> None:
    url = server.base_url
    server.stop()
    chat = OpenAIChatModel("test-model", base_url=url, api_key="k", max_retries=1, timeout=2)
    with pytest.raises(RemoteModelError, match=r"Could not reach .*after 1 retry.*server is running"):
        chat.invoke("hello")


def test_retry_wrapper_can_retry_a_broken_stream_before_any_chunk(chat: OpenAIChatModel,
                                                                  server: OpenAIServer) -> None:
    # A failure before the first chunk (here a 400 that is gone on the second try) can be retried
    # with plait's Retry wrapper; the SDK itself retries only 408/409/429/5xx and transport faults.
    server.fault("status", status=400, message="try again")
    retried = chat.with_retry(retry_on=RemoteModelError, attempts=2, backoff=0.01)
    chunks = list(retried.stream("hello"))
    assert "".join(c.content for c in chunks) == "You said: hello"


def test_a_stalled_stream_times_out(server: OpenAIServer) -> None:
    chat = OpenAIChatModel("test-model", base_url=server.base_url, api_key=server.api_key, timeout=0.3)
    server.token_delay = 1.0  # the server sends its headers, then goes quiet
    with pytest.raises(StreamInterruptedError, match="ReadTimeout"):
        list(chat.stream("hello"))


def _chat(server: OpenAIServer, **kw: object) -> OpenAIChatModel:
    return OpenAIChatModel("test-model", base_url=server.base_url, api_key=server.api_key, **kw)


def test_a_retry_after_past_the_deadline_is_not_waited(server: OpenAIServer) -> None:
    """Issue 18.9: a 429 asking for 120 s fails at once (saying so) instead of waiting 120 s."""
    server.fault("status", status=429, retry_after=120)
    with pytest.raises(RemoteModelError, match="asked to wait 120 s") as err:
        _chat(server, timeout=5.0, max_retries=3).invoke("hello")
    assert err.value.status == 429
    assert attempts(server) == 1


def test_retry_after_longer_than_max_retry_wait_is_not_waited(server: OpenAIServer) -> None:
    server.fault("status", status=429, retry_after=30)
    with pytest.raises(RemoteModelError, match=r"asked to wait 30 s, longer than max_retry_wait \(20 s\)"):
        _chat(server, timeout=120.0, max_retries=3).invoke("hello")  # time enough, but 30 s is past the cap
    assert attempts(server) == 1


@pytest.mark.parametrize("use_async", [False, True])
async def test_timeout_is_one_deadline_for_all_attempts(server: OpenAIServer, use_async: bool) -> None:
    """Issue 18.9: a stalled server is given up on at ``timeout``, not after (retries + 1) x timeout."""
    server.fault("latency", delay=3.0, times=20)
    chat = _chat(server, timeout=1.0, attempt_timeout=0.3, max_retries=10)
    with pytest.raises(RemoteTimeoutError, match="within 1 s"):
        if use_async:
            await chat.ainvoke("hello")
        else:
            chat.invoke("hello")
    # each attempt lasts its 0.3 s: at most 4 fit in the second, never the 11 that max_retries allows
    assert 1 <= attempts(server) <= 4
