"""Embeddings from one or several OpenAI-compatible ``/v1/embeddings`` endpoints (official ``openai`` SDK).

``embed_documents(texts)`` cuts the texts into batches of ``batch_size`` and sends up to
``max_concurrency`` of them at once, spread over the base URLs given (batch i goes first to URL
i mod n): TEI, vLLM, Ollama and ``plait serve --embeddings`` servers scale the embedding work out
this way. A batch that fails with 429, 5xx, a timeout or a connection error is sent again, to
the next URL that is not resting (a URL that failed rests for a while, doubling from
``rest`` seconds, so that other batches skip it too), with backoff when every URL is resting, at
most ``max_retries`` times in all; a batch that still fails raises :class:`RemoteModelError`
naming its URL. The vectors come back in order. Other errors (400, 401, 404) are raised at once.
``embed_query(text)`` embeds one text. As a Runnable, a string in gives a vector out and a list of
strings gives a list of vectors (the :class:`plait.embeddings.Embeddings` contract); the async
methods run the same code in a worker thread. Settings and errors: see :mod:`plait.remote._openai`.

Resuming: these calls hold no state between batches; ingestion (:mod:`plait.retrievers.indexing`)
commits chunks batch by batch, so an ingest stopped by an error or a kill resumes from its last
committed batch when run again.

Example::

    from plait.remote.openai_embeddings import OpenAIEmbeddings
    emb = OpenAIEmbeddings("text-embedding-3-small", dimensions=256)
    vectors = emb.embed_documents(["first text", "second text"])
    query = emb.embed_query("which text?")
    fleet = OpenAIEmbeddings("minilm", base_url=["http://gpu1:8000/v1", "http://gpu2:8000/v1"])
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from plait.embeddings import Embeddings
from plait.remote._openai import OpenAISettings, RemoteModelError


class OpenAIEmbeddings(Embeddings):
    """Text embeddings from one or several OpenAI-compatible servers.

    Args:
        model: the embedding model id on those servers.
        base_url: one URL or a list of URLs serving the same model; else ``OPENAI_BASE_URL``.
        api_key, organization: else ``OPENAI_API_KEY`` / ``OPENAI_ORG_ID``.
        dimensions: ask for shorter vectors (models that support it, e.g. text-embedding-3-*).
        batch_size: texts per request (32: what TEI accepts by default; OpenAI takes up to 2048).
        max_concurrency: requests in flight at once (over all URLs).
        timeout: seconds for one batch, all its attempts and waits included.
        max_retries: further attempts of a batch after a 429/5xx/timeout/connection error.
        rest: seconds a URL that failed is skipped by other batches (doubling while it keeps failing).
        max_tokens: the model's input limit in tokens, where known (splitters size chunks by it).
    """

    def __init__(self, model: str = "text-embedding-3-small", *, base_url: str | Sequence[str] | None = None,
                 api_key: str | None = None, organization: str | None = None, dimensions: int | None = None,
                 batch_size: int = 32, max_concurrency: int = 8, timeout: float = 60.0,
                 max_retries: int = 3, rest: float = 1.0, max_tokens: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        urls = [base_url] if base_url is None or isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("base_url is an empty list: give at least one URL (or None for OPENAI_BASE_URL)")
        self.model = self.model_name = model
        self.max_tokens = max_tokens
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.max_concurrency = max(1, max_concurrency)
        self.max_retries = max_retries
        self.rest = rest
        self.servers = [OpenAISettings(u, api_key, organization, timeout=timeout, max_retries=max_retries)
                        for u in urls]
        self.settings = self.servers[0]
        self._resting: dict[int, tuple[float, float]] = {}  # server -> (until, its next rest)
        self._calls = 0  # where the next call's first batch goes, so that queries spread too
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        urls = [s.base_url for s in self.servers]
        return f"OpenAIEmbeddings({self.model!r}, base_url={urls[0] if len(urls) == 1 else urls!r})"

    def get_name(self) -> str:
        return self.name or f"OpenAIEmbeddings({self.model})"

    def warm_up(self) -> None:
        """Make the SDK clients now (it fails here if no API key is set for api.openai.com)."""
        for server in self.servers:
            server.client()

    def _batches(self, texts: Sequence[str]) -> list[list[str]]:
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"Text #{i} to embed is a {type(t).__name__}, not a string")
            if not t.strip():
                raise ValueError(f"Text #{i} to embed is empty; embedding APIs reject empty input, drop it first")
        return [texts[i:i + self.batch_size] for i in range(0, len(texts), self.batch_size)]

    def _request(self, batch: list[str]) -> dict[str, Any]:
        req: dict[str, Any] = {"model": self.model, "input": batch}
        if self.dimensions is not None:
            req["dimensions"] = self.dimensions
        return req

    def _vectors(self, server: OpenAISettings, resp: Any, n: int) -> list[list[float]]:
        data = sorted(resp.data, key=lambda d: d.index)
        if len(data) != n:
            raise RemoteModelError(f"{server.base_url} returned {len(data)} embeddings for {n} texts")
        return [list(map(float, d.embedding)) for d in data]

    # --- sending one batch, with failover ----------------------------------------------------------
    def _pick(self, first: int) -> tuple[int, float]:
        """The server to send to: ``first``, else the next one not resting; (server, seconds to wait first)."""
        n = len(self.servers)
        now = time.monotonic()
        with self._lock:
            for i in range(n):
                j = (first + i) % n
                if self._resting.get(j, (0.0, 0.0))[0] <= now:
                    return j, 0.0
            j = min(range(n), key=lambda k: self._resting[k][0])  # all resting: the one back soonest
            return j, self._resting[j][0] - now

    def _failed(self, j: int, at_least: float) -> None:
        """Rest server ``j``: its rest doubles while it keeps failing; never less than the server asked."""
        with self._lock:
            _, rest = self._resting.get(j, (0.0, self.rest))
            self._resting[j] = (time.monotonic() + max(rest, at_least), min(rest * 2, 30.0))

    def _answered(self, j: int) -> None:
        with self._lock:
            self._resting.pop(j, None)

    def _send(self, batch: list[str], first: int) -> list[list[float]]:
        """One batch, to server ``first`` or, after a retried error, to the next one (see the module docstring)."""
        deadline = time.monotonic() + self.servers[0].timeout
        j, attempt = first % len(self.servers), 0
        while True:
            j, wait = self._pick(j)
            server = self.servers[j]
            if wait > 0:
                if time.monotonic() + wait >= deadline:
                    raise RemoteModelError(f"Every embeddings server is failing ({', '.join(s.base_url for s in self.servers)}); "
                                           f"gave up on a batch after {attempt} attempts")
                time.sleep(wait)
            try:
                client = server._without_retries(server.client())
                resp = client.embeddings.create(**self._request(batch), timeout=server._attempt_timeout(deadline))
            except Exception as e:
                retry = server._retry_wait(e, attempt, deadline)
                if retry is None:
                    raise server.error(e, self.model, "embeddings", attempt) from e
                self._failed(j, retry)  # retry: the backoff, or the server's Retry-After
                attempt += 1
                j = (j + 1) % len(self.servers)  # the next server; _pick waits when all are resting
                continue
            self._answered(j)
            return self._vectors(server, resp, len(batch))

    # --- the Embeddings interface ----------------------------------------------------------------
    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order (batches sent concurrently, spread over the servers)."""
        batches = self._batches(texts)
        with self._lock:
            first = self._calls
            self._calls += len(batches)
        if len(batches) <= 1:
            return [v for b in batches for v in self._send(b, first)]
        with ThreadPoolExecutor(min(self.max_concurrency, len(batches))) as pool:
            parts = list(pool.map(self._send, batches, range(first, first + len(batches))))
        return [v for part in parts for v in part]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]
