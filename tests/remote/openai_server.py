"""A small OpenAI-compatible HTTP server for tests: real sockets, real wire format, scripted replies.

Speaks ``POST /v1/chat/completions`` (JSON and SSE streaming, tool calls streamed in pieces, usage),
``POST /v1/embeddings`` (float and base64 encodings), ``POST /v1/images/generations`` (b64 PNGs),
``GET /v1/models``; checks the API key (401), the model name (404) and the request (400) the way
OpenAI does, and injects faults on demand: latency, any status with ``Retry-After``, a connection
dropped before the reply or in the middle of a stream, a stream that ends cleanly but early,
malformed JSON bodies and SSE events.

Replies are deterministic: scripted ones in order (:meth:`OpenAIServer.reply`); else, where the
request forces a tool (``tool_choice``, or plait's prompted "You must call the tool 'X' now."), a
call to it; where it asks for JSON output (``response_format``, or plait's prompted schema), an
object fitting the schema. Values are read literally from the request (see ``openai_replies.fill``): a stand-in
for a model that follows instructions. Else an echo of the last user message (``"You said: ..."``).
Text is cut by ``stop`` and ``max_tokens`` (words are tokens).
Embeddings are hashed bags of words (texts sharing words are similar), normalised.

Example::

    with OpenAIServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key)
        server.fault("status", status=429, retry_after=1)   # the next request gets a 429
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.remote.openai_replies import Reply, default_reply, embed

_TOKEN = re.compile(r"\s*\S+|\s+")
FAULTS = ("latency", "status", "drop", "drop_mid_stream", "truncate_stream", "malformed_json", "malformed_sse")


@dataclass
class Fault:
    kind: str
    status: int = 500
    retry_after: float | None = None
    delay: float = 0.0
    message: str = "injected fault"
    path: str | None = None  # only requests whose path ends with this; None = any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-reply (a timeout test, a cancelled stream) is not a server error.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class OpenAIServer:
    """Run with ``with OpenAIServer() as s:`` (or ``start()``/``stop()``); ``s.base_url`` ends in ``/v1``."""

    def __init__(self, api_key: str = "test-key", models: tuple[str, ...] = ("test-model", "test-embed", "test-image"),
                 embedding_dim: int = 16, token_delay: float = 0.0) -> None:
        self.api_key = api_key
        self.models = set(models)
        self.embedding_dim = embedding_dim
        self.token_delay = token_delay
        self.requests: list[Recorded] = []
        self._faults: deque[Fault] = deque()
        self._replies: deque[Reply | Callable[[dict[str, Any]], Reply]] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.in_flight = 0
        self.peak_in_flight = 0  # most POST requests handled at the same time

    # --- control -------------------------------------------------------------------------------
    def start(self) -> OpenAIServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def fault(self, kind: str, times: int = 1, **kw: Any) -> None:
        """Inject ``kind`` (one of FAULTS) into the next ``times`` matching requests."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULTS}")
        with self._lock:
            self._faults.extend(Fault(kind, **kw) for _ in range(times))

    def reply(self, content: str | None = "", tool_calls: list[dict[str, Any]] | None = None,
              finish_reason: str | None = None) -> None:
        """Script the next chat reply (text and/or tool calls ``{"name", "arguments"}``)."""
        with self._lock:
            self._replies.append(Reply(content, tool_calls or [], finish_reason))

    def reply_with(self, func: Callable[[dict[str, Any]], Reply]) -> None:
        """Script the next chat reply as a function of the request body."""
        with self._lock:
            self._replies.append(func)

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.path.endswith("/chat/completions")]

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for f in list(self._faults):
                if f.path is None or path.endswith(f.path):
                    self._faults.remove(f)
                    return f
        return None

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            scripted = self._replies.popleft() if self._replies else None
        if scripted is not None:
            return scripted(body) if callable(scripted) else scripted
        return default_reply(body)

def _error(status: int, message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, delayed ACKs add ~40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # --- plumbing --------------------------------------------------------------------------------
    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None,
                   raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        """Close the socket at once, whatever was (not) sent."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_GET(self) -> None:
        self._record(None)
        if not self._authorized():
            return
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in sorted(self.owner.models)]})
        else:
            self._send_json(404, _error(404, f"Unknown path {self.path}", "invalid_request_error"))

    def do_POST(self) -> None:
        with self.owner._lock:
            self.owner.in_flight += 1
            self.owner.peak_in_flight = max(self.owner.peak_in_flight, self.owner.in_flight)
        try:
            self._post()
        finally:
            with self.owner._lock:
                self.owner.in_flight -= 1

    def _post(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._record(raw.decode(errors="replace"))
            self._send_json(400, _error(400, "We could not parse the JSON body of your request.",
                                        "invalid_request_error"))
            return
        self._record(body)
        fault = self.owner._take_fault(self.path)
        if fault is not None and fault.kind == "latency":
            time.sleep(fault.delay)
            fault = None
        if fault is not None and fault.kind == "drop":
            self._drop()
            return
        if fault is not None and fault.kind == "status":
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            kind = "rate_limit_exceeded" if fault.status == 429 else "server_error"
            self._send_json(fault.status, _error(fault.status, fault.message, kind), headers)
            return
        if not self._authorized():
            return
        model = body.get("model")
        if model not in self.owner.models:
            self._send_json(404, _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                                        "invalid_request_error", "model_not_found"))
            return
        if self.path.endswith("/chat/completions"):
            self._chat(body, fault)
        elif self.path.endswith("/embeddings"):
            self._embeddings(body, fault)
        elif self.path.endswith("/images/generations"):
            self._images(body, fault)
        else:
            self._send_json(404, _error(404, f"Unknown path {self.path}", "invalid_request_error"))

    def _record(self, body: Any) -> None:
        with self.owner._lock:
            self.owner.requests.append(Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.owner.api_key}":
            return True
        self._send_json(401, _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
        return False

    # --- endpoints -------------------------------------------------------------------------------
    def _chat(self, body: dict[str, Any], fault: Fault | None) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) and "role" in m
                                                                      for m in messages):
            self._send_json(400, _error(400, "'messages' must be a non-empty list of messages with a role.",
                                        "invalid_request_error", param="messages"))
            return
        temperature = body.get("temperature")
        if temperature is not None and not 0 <= temperature <= 2:
            self._send_json(400, _error(400, f"Invalid 'temperature': {temperature} is not between 0 and 2.",
                                        "invalid_request_error", param="temperature"))
            return
        reply = self.owner._next_reply(body)
        tokens = _TOKEN.findall(reply.content or "")
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        text = "".join(tokens)
        cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
        if cuts:
            tokens = _TOKEN.findall(text[:min(cuts)])
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit is not None and len(tokens) > limit:
            tokens, finish = tokens[:limit], "length"
        prompt_tokens = sum(len(_TOKEN.findall(str(m.get("content") or ""))) for m in messages)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                 "total_tokens": prompt_tokens + len(tokens)}
        calls = [{"id": f"call_{i}_{c['name']}", "type": "function",
                  "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))}}
                 for i, c in enumerate(reply.tool_calls)]
        base = {"id": "chatcmpl-test", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            if fault is not None and fault.kind == "malformed_json":
                self._send_json(200, None, raw=b'{"id": "chatcmpl-test", "choices": [{"mess')
                return
            message: dict[str, Any] = {"role": "assistant", "content": "".join(tokens) if reply.content is not None
                                       else None}
            if calls:
                message["tool_calls"] = calls
            self._send_json(200, {**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}]})
            return
        self._stream(body, base, tokens, calls, finish, usage, fault)

    def _stream(self, body: dict[str, Any], base: dict[str, Any], tokens: list[str], calls: list[dict[str, Any]],
                finish: str, usage: dict[str, int], fault: Fault | None) -> None:
        def event(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {**base, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}

        events: list[Any] = [event({"role": "assistant", "content": ""})]
        events += [event({"content": t}) for t in tokens]
        for i, call in enumerate(calls):
            args = call["function"]["arguments"]
            third = max(1, len(args) // 3)
            events.append(event({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                                 "function": {"name": call["function"]["name"], "arguments": ""}}]}))
            events += [event({"tool_calls": [{"index": i, "function": {"arguments": args[j:j + third]}}]})
                       for j in range(0, len(args), third)]
        events.append(event({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        cut = max(2, len(events) // 2)
        for n, ev in enumerate(events):
            if fault is not None and n == cut:
                if fault.kind == "drop_mid_stream":
                    self._drop()
                    return
                if fault.kind == "truncate_stream":
                    self.wfile.write(b"0\r\n\r\n")  # a clean end of the body, without finish or [DONE]
                    return
                if fault.kind == "malformed_sse":
                    self._chunk(b'data: {"id": "chatcmpl-test", "choi\n\n')
            if self.owner.token_delay:
                time.sleep(self.owner.token_delay)
            self._chunk(f"data: {json.dumps(ev)}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _embeddings(self, body: dict[str, Any], fault: Fault | None) -> None:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) and t for t in inputs):
            self._send_json(400, _error(400, "'input' must be a non-empty string or a list of non-empty strings.",
                                        "invalid_request_error", param="input"))
            return
        if fault is not None and fault.kind == "malformed_json":
            self._send_json(200, None, raw=b'{"object": "list", "data": [{"embedd')
            return
        dim = body.get("dimensions") or self.owner.embedding_dim
        data = []
        for i, text in enumerate(inputs):
            vec: Any = embed(text, dim)
            if body.get("encoding_format") == "base64":
                vec = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vec})
        n = sum(len(t.split()) for t in inputs)
        self._send_json(200, {"object": "list", "model": body["model"], "data": data,
                              "usage": {"prompt_tokens": n, "total_tokens": n}})

    def _images(self, body: dict[str, Any], fault: Fault | None) -> None:
        from PIL import Image

        prompt = body.get("prompt")
        size = str(body.get("size") or "256x256")
        if not prompt or not re.fullmatch(r"\d+x\d+", size):
            self._send_json(400, _error(400, "'prompt' is required and 'size' must look like '256x256'.",
                                        "invalid_request_error", param="size" if prompt else "prompt"))
            return
        width, height = (int(v) for v in size.split("x"))
        data = []
        for i in range(int(body.get("n") or 1)):
            # The colour depends on the prompt, the seed and the image index: deterministic, distinct.
            key = f"{prompt}|{body.get('seed')}|{i}".encode()
            colour = tuple(hashlib.sha256(key).digest()[:3])
            buf = io.BytesIO()
            Image.new("RGB", (width, height), colour).save(buf, format="PNG")
            data.append({"b64_json": base64.b64encode(buf.getvalue()).decode(), "revised_prompt": prompt})
        self._send_json(200, {"created": int(time.time()), "data": data})
