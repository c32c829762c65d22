"""Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint (official ``openai`` SDK).

``embed_documents(texts)`` sends the texts in batches of ``batch_size`` (sequentially; the async
twin runs ``max_concurrency`` batches at once) and returns one vector per text, in order.
``embed_query(text)`` embeds one text. As a Runnable, a string in gives a vector out and a list
of strings gives a list of vectors (the :class:`plait.embeddings.Embeddings` contract). Settings, retries and errors: see :mod:`plait.remote._openai`.

Example::

    from plait.remote.openai_embeddings import OpenAIEmbeddings
    emb = OpenAIEmbeddings("text-embedding-3-small", dimensions=256)
    vectors = emb.embed_documents(["first text", "second text"])
    query = emb.embed_query("which text?")
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from plait.embeddings import Embeddings
from plait.remote._openai import OpenAISettings, RemoteModelError


class OpenAIEmbeddings(Embeddings):
    """Text embeddings from an OpenAI-compatible server.

    Args:
        model: the embedding model id on that server.
        base_url, api_key, organization: else ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` / ``OPENAI_ORG_ID``.
        dimensions: ask for shorter vectors (models that support it, e.g. text-embedding-3-*).
        batch_size: texts per request (OpenAI accepts up to 2048).
        max_concurrency: requests in flight at once in the async methods.
        timeout, max_retries: per request; retries of 429/5xx/connection errors.
        max_tokens: the model's input limit in tokens, where known (splitters size chunks by it).
    """

    def __init__(self, model: str = "text-embedding-3-small", *, base_url: str | None = None,
                 api_key: str | None = None, organization: str | None = None, dimensions: int | None = None,
                 batch_size: int = 256, max_concurrency: int = 4, timeout: float = 60.0,
                 max_retries: int = 3, max_tokens: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = self.model_name = model
        self.max_tokens = max_tokens
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.max_concurrency = max(1, max_concurrency)
        self.settings = OpenAISettings(base_url, api_key, organization, timeout=timeout, max_retries=max_retries)

    def __repr__(self) -> str:
        return f"OpenAIEmbeddings({self.model!r}, base_url={self.settings.base_url!r})"

    def get_name(self) -> str:
        return self.name or f"OpenAIEmbeddings({self.model})"

    def warm_up(self) -> None:
        """Make the SDK client now (it fails here if no API key is set for api.openai.com)."""
        self.settings.client()

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

    def _vectors(self, resp: Any, n: int) -> list[list[float]]:
        data = sorted(resp.data, key=lambda d: d.index)
        if len(data) != n:
            raise RemoteModelError(f"{self.settings.base_url} returned {len(data)} embeddings for {n} texts")
        return [list(map(float, d.embedding)) for d in data]

    # --- the Embeddings interface ----------------------------------------------------------------
    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        out: list[list[float]] = []
        for batch in self._batches(texts):
            try:
                resp = self.settings.client().embeddings.create(**self._request(batch))
            except Exception as e:
                raise self.settings.error(e, self.model, "embeddings") from e
            out.extend(self._vectors(resp, len(batch)))
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        sem = asyncio.Semaphore(self.max_concurrency)

        async def one(batch: list[str]) -> list[list[float]]:
            async with sem:
                try:
                    resp = await self.settings.aclient().embeddings.create(**self._request(batch))
                except Exception as e:
                    raise self.settings.error(e, self.model, "embeddings") from e
            return self._vectors(resp, len(batch))

        parts = await asyncio.gather(*(one(b) for b in self._batches(texts)))
        return [v for part in parts for v in part]

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]
