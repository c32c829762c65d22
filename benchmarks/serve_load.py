"""Load test of ``plait serve``: N concurrent streaming clients for T seconds, on 127.0.0.1 only.

Runs, each server in its own process (uvicorn, uvloop, httptools) and the clients in this one
(raw asyncio protocol on uvloop, so the client costs little and does not share the server's core):

(a) a fake model that emits one token every 10 ms (``FakeChatModel(delay=0.01)``);
(b) with ``--local``: the default local model (``chat_model_from_spec("local")``), few streams,
    a short run; reported as null when the model is unavailable.

Reported: requests/s, time to first token p50/p99, tokens/s, errors, resident memory of the
server, and the server's added latency per token: the clients' mean gap between tokens minus the
fake model's own gap, measured in the same run by driving the same model the same way with no
HTTP in between (same event loop kind, same concurrency).
Targets: 200 streams, zero errors, under 1 ms added per token at p50.

    python benchmarks/serve_load.py                 # 200 streams for 10 s
    python benchmarks/serve_load.py --quick         # 50 streams for 3 s
    python benchmarks/serve_load.py --local         # also the local model
    python benchmarks/serve_load.py --sweep 50,100,400   # added latency as the load grows

Last line: one JSON object (keys ``streams``, ``errors``, ``ttft_p50_ms``, ``ttft_p99_ms``,
``added_ms_per_token_p50``, ``rps``, ``rss_mb`` for the fake-model run, plus ``local``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
DELAY_S = 0.01


def _reply(words: int) -> str:
    return " ".join(f"w{i}" for i in range(words))


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


# --- the server process ---------------------------------------------------------------------------
def serve_main(kind: str, port: int, words: int, pin: bool) -> None:
    if pin:
        _pin(0)
    from plait.serve import create_app, run_server

    if kind == "fake":
        from plait.fake import FakeChatModel

        model: Any = FakeChatModel([_reply(words)], delay=DELAY_S)
    else:
        from plait.models import chat_model_from_spec

        model = chat_model_from_spec("local", max_tokens=words)
        model.invoke("Hi")  # load the weights before the clients start
    run_server(create_app(model, name="bench", max_concurrency=10_000), HOST, port, log_level="warning")


def baseline_main(streams: int, words: int, seconds: float, pin: bool) -> None:
    """The fake model's own pace: same model, same loop, same concurrency, no HTTP. Prints JSON."""
    if pin:
        _pin(0)
    import uvloop

    from plait.fake import FakeChatModel

    model = FakeChatModel([_reply(words)], delay=DELAY_S)
    gaps: list[float] = []
    ttfts: list[float] = []

    async def one_client(deadline: float) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            stamps = [time.perf_counter() async for c in model.astream("hi") if c.content]
            gaps.append((stamps[-1] - stamps[0]) / (len(stamps) - 1))
            ttfts.append(stamps[0] - start)

    async def main() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(one_client(deadline) for _ in range(streams)))

    uvloop.run(main())
    print(json.dumps({"gap_p50_ms": statistics.median(gaps) * 1000, "ttft_p50_ms": statistics.median(ttfts) * 1000,
                      "n": len(gaps)}))


# --- the client -----------------------------------------------------------------------------------
@dataclass
class Result:
    ok: bool = False
    error: str = ""
    ttft: float = 0.0
    tokens: int = 0
    gap: float = 0.0  # mean time between tokens of this stream


@dataclass
class _Pending:
    sent: float
    future: asyncio.Future[Result]
    result: Result = field(default_factory=Result)
    first: float = 0.0
    last: float = 0.0


class StreamProtocol(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends streaming requests and parses the SSE replies.

    Parsing is byte-level (no JSON per token): a content token is a ``"delta":{"content":`` event.
    """

    CONTENT = b'"delta":{"content":'

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.sse = b""
        self.pending: _Pending | None = None
        self.phase = "idle"
        self.broken = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pending and not self.pending.future.done():
            self.pending.future.set_result(Result(error=f"connection lost: {exc}"))
        self.broken = True

    def request(self, raw: bytes) -> asyncio.Future[Result]:
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.pending = _Pending(sent=time.perf_counter(), future=fut)
        self.phase, self.buf, self.sse = "head", b"", b""
        assert self.transport is not None
        self.transport.write(raw)
        return fut

    def _finish(self, error: str = "") -> None:
        p = self.pending
        assert p is not None
        r = p.result
        if error:
            r.error = error
            self.broken = True  # the rest of this response is unread: use a new connection
            if self.transport is not None:
                self.transport.close()
        elif r.tokens == 0:
            r.error = "no tokens"
        else:
            r.ok = True
            r.ttft = p.first - p.sent
            r.gap = (p.last - p.first) / (r.tokens - 1) if r.tokens > 1 else 0.0
        self.phase = "idle"
        if not p.future.done():
            p.future.set_result(r)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buf += data
        if self.phase == "head":
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end], self.buf[end + 4:]
            status = int(head.split(b" ", 2)[1])
            if status != 200:
                return self._finish(f"HTTP {status}")
            if b"chunked" not in head.lower():
                return self._finish("response is not chunked")
            self.phase = "chunks"
        while self.phase == "chunks":
            eol = self.buf.find(b"\r\n")
            if eol < 0:
                return
            size = int(self.buf[:eol], 16)
            if len(self.buf) < eol + 2 + size + 2:
                return
            chunk = self.buf[eol + 2:eol + 2 + size]
            self.buf = self.buf[eol + 2 + size + 2:]
            if size == 0:
                return self._finish("stream ended without [DONE]")
            self.sse += chunk
            while True:
                cut = self.sse.find(b"\n\n")
                if cut < 0:
                    break
                event, self.sse = self.sse[:cut], self.sse[cut + 2:]
                if event == b"data: [DONE]":
                    self.phase = "tail"
                    break
                if self.CONTENT in event:
                    p = self.pending
                    assert p is not None
                    if p.result.tokens == 0:
                        p.first = now
                    p.last = now
                    p.result.tokens += 1
                elif b'"error"' in event:
                    return self._finish("error event: " + event[:200].decode(errors="replace"))
        if self.phase == "tail" and self.buf.endswith(b"0\r\n\r\n"):
            self._finish()


async def run_clients(port: int, streams: int, seconds: float, words: int, model: str) -> dict[str, Any]:
    body = json.dumps({"model": model, "stream": True,
                       "messages": [{"role": "user", "content": "Tell me something."}]}).encode()
    raw = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    loop = asyncio.get_running_loop()
    results: list[Result] = []
    deadline = 0.0

    async def client() -> None:
        proto: StreamProtocol | None = None
        while time.perf_counter() < deadline:
            try:
                if proto is None or proto.broken:
                    _, proto = await loop.create_connection(StreamProtocol, HOST, port)
                result = await asyncio.wait_for(proto.request(raw), timeout=60)
            except Exception as e:  # counted as an error, then reconnect
                result, proto = Result(error=f"{type(e).__name__}: {e}"), None
            results.append(result)

    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(streams)))
    elapsed = time.perf_counter() - started
    ok = [r for r in results if r.ok]
    errors = [r.error for r in results if not r.ok]
    ttfts = sorted(r.ttft * 1000 for r in ok) or [float("nan")]
    gaps = [r.gap * 1000 for r in ok if r.tokens > 1] or [float("nan")]
    return {"streams": streams, "seconds": round(elapsed, 2), "requests": len(results), "errors": len(errors),
            "error_samples": sorted(set(errors))[:3], "rps": round(len(ok) / elapsed, 1),
            "tokens_per_s": round(sum(r.tokens for r in ok) / elapsed, 1),
            "ttft_p50_ms": round(statistics.median(ttfts), 2),
            "ttft_p99_ms": round(ttfts[min(len(ttfts) - 1, int(len(ttfts) * 0.99))], 2),
            "gap_p50_ms": round(statistics.median(gaps), 3)}


# --- orchestration --------------------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not start within {timeout} s")


def run_against(kind: str, streams: int, seconds: float, words: int, pin: bool, start_timeout: float) -> dict[str, Any]:
    import psutil
    import uvloop

    port = _free_port()
    cmd = [sys.executable, __file__, "--_server", kind, "--_port", str(port), "--words", str(words)]
    proc = subprocess.Popen(cmd + (["--pin"] if pin else []))
    try:
        _wait_ready(port, proc, start_timeout)
        server = psutil.Process(proc.pid)
        peak = [server.memory_info().rss]
        cpu_before = server.cpu_times()

        async def main() -> dict[str, Any]:
            async def sample() -> None:
                while True:
                    await asyncio.sleep(0.5)
                    peak.append(server.memory_info().rss)

            sampler = asyncio.ensure_future(sample())
            try:
                return await run_clients(port, streams, seconds, words, "bench")
            finally:
                sampler.cancel()

        stats = uvloop.run(main())
        cpu_after = server.cpu_times()
        stats["server_cpu_s"] = round((cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system), 2)
        stats["rss_mb"] = round(max(peak) / 2**20, 1)
        return stats
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=200, help="concurrent streaming clients (default 200)")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long the clients run (default 10)")
    ap.add_argument("--words", type=int, default=50, help="tokens per fake reply (default 50)")
    ap.add_argument("--quick", action="store_true", help="50 streams for 3 s")
    ap.add_argument("--sweep", default="", metavar="N,N,...",
                    help="also run these stream counts first (e.g. 50,100,400), one table row each")
    ap.add_argument("--local", action="store_true", help="also load-test the default local model (short run)")
    ap.add_argument("--local-streams", type=int, default=4)
    ap.add_argument("--local-seconds", type=float, default=8.0)
    ap.add_argument("--pin", action="store_true",
                    help="pin the server to core 0 and the clients to core 1 (steadier on an idle machine; "
                         "worse on a shared one, where the scheduler should move them away from other work)")
    ap.add_argument("--_server", help=argparse.SUPPRESS)
    ap.add_argument("--_port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--_baseline", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    pin = args.pin
    if args.quick:
        args.streams, args.seconds = 50, 3.0
    if args._server:
        serve_main(args._server, args._port, args.words, pin)
        return 0
    if args._baseline:
        baseline_main(args.streams, args.words, min(args.seconds, 3.0), pin)
        return 0
    if pin:
        _pin(1)

    def measure(streams: int) -> tuple[dict[str, Any], dict[str, Any]]:
        base_cmd = [sys.executable, __file__, "--_baseline", "--streams", str(streams), "--words", str(args.words),
                    "--seconds", str(args.seconds)] + (["--pin"] if pin else [])
        base = json.loads(subprocess.run(base_cmd, check=True, capture_output=True, text=True).stdout.strip())
        run = run_against("fake", streams, args.seconds, args.words, pin, 30)
        run["added_ms_per_token_p50"] = round(run["gap_p50_ms"] - base["gap_p50_ms"], 3)
        return base, run

    sweep = [measure(n) for n in sorted({int(x) for x in args.sweep.split(",") if x.strip()} - {args.streams})]
    baseline, fake = measure(args.streams)
    added = fake["added_ms_per_token_p50"]

    local: dict[str, Any] | None = None
    if args.local:
        try:
            local = run_against("local", args.local_streams, args.local_seconds, 16, pin, 300)
        except Exception as e:  # the local model is optional here
            print(f"local model run skipped: {e}", file=sys.stderr)

    print(f"\nserve_load: {args.streams} streaming clients x {args.seconds:.0f} s, fake model "
          f"{args.words} tokens at {DELAY_S * 1000:.0f} ms/token")
    print(f"{'run':<8}{'streams':>8}{'req':>8}{'errors':>8}{'req/s':>9}{'tok/s':>10}{'TTFT p50':>10}"
          f"{'TTFT p99':>10}{'gap p50':>9}{'RSS MB':>8}")
    for name, r in (("fake", fake), ("local", local)):
        if r is None:
            continue
        print(f"{name:<8}{r['streams']:>8}{r['requests']:>8}{r['errors']:>8}{r['rps']:>9}{r['tokens_per_s']:>10}"
              f"{r['ttft_p50_ms']:>10}{r['ttft_p99_ms']:>10}{r['gap_p50_ms']:>9}{r['rss_mb']:>8}")
    print(f"fake model alone (no HTTP, same loop and concurrency): {baseline['gap_p50_ms']:.3f} ms between tokens, "
          f"first token after {baseline['ttft_p50_ms']:.1f} ms")
    print(f"server adds {added:.3f} ms per token at p50 (target < 1 ms); server CPU {fake['server_cpu_s']} s "
          f"in {fake['seconds']} s")
    if sweep:
        print(f"\n{'streams':>8}{'errors':>8}{'req/s':>9}{'tok/s':>10}{'TTFT p50':>10}{'TTFT p99':>10}"
              f"{'model gap':>10}{'gap p50':>9}{'added':>8}{'CPU s':>7}")
        for base, r in [*sweep, (baseline, fake)]:
            print(f"{r['streams']:>8}{r['errors']:>8}{r['rps']:>9}{r['tokens_per_s']:>10}{r['ttft_p50_ms']:>10}"
                  f"{r['ttft_p99_ms']:>10}{base['gap_p50_ms']:>10.3f}{r['gap_p50_ms']:>9}"
                  f"{r['added_ms_per_token_p50']:>8}{r['server_cpu_s']:>7}")
    if fake["error_samples"]:
        print("errors:", fake["error_samples"])
    out = {"streams": fake["streams"], "errors": fake["errors"], "requests": fake["requests"],
           "ttft_p50_ms": fake["ttft_p50_ms"], "ttft_p99_ms": fake["ttft_p99_ms"],
           "added_ms_per_token_p50": added, "gap_p50_ms": fake["gap_p50_ms"],
           "model_gap_p50_ms": round(baseline["gap_p50_ms"], 3),
           "model_ttft_p50_ms": round(baseline["ttft_p50_ms"], 2), "rps": fake["rps"],
           "tokens_per_s": fake["tokens_per_s"], "rss_mb": fake["rss_mb"], "server_cpu_s": fake["server_cpu_s"],
           "local": None if local is None else {k: local[k] for k in (
               "streams", "errors", "rps", "tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "gap_p50_ms", "rss_mb")},
           "sweep": [{"streams": r["streams"], "errors": r["errors"], "added_ms_per_token_p50": r["added_ms_per_token_p50"],
                      "ttft_p50_ms": r["ttft_p50_ms"], "server_cpu_s": r["server_cpu_s"]} for _, r in sweep]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
