"""The embeddings interface: text in, vectors out.

Contract: a backend subclasses :class:`Embeddings` and implements ``embed_documents(texts)``
(one vector per text, in order). Everything else has a default:

- ``embed_query(text)`` embeds one text with ``embed_documents``; backends whose models embed
  queries differently (instruction prefixes) override it;
- ``embed_array(texts)`` gives the vectors as one float32 numpy array (what stores write); the
  local backend, which computes them as an array, overrides it;
- ``aembed_documents`` / ``aembed_query`` run the sync methods in a worker thread; backends with
  a native async client (the OpenAI-compatible one) override them;
- as a Runnable, a string in gives one vector, a list of strings gives a list of vectors.

Batching is the backend's business (``batch_size`` is the conventional constructor argument):
callers pass all their texts at once. Constructors are cheap; weights load on first use, or on
``warm_up()``. ``model_name`` is the id a server lists the model under (``None``: unnamed).

Backends: :class:`plait.local_models.embeddings.sentence_transformer.SentenceTransformerEmbeddings` (local, the
bundled all-MiniLM-L6-v2 by default) and :class:`plait.remote.openai_embeddings.OpenAIEmbeddings`.

Example::

    from plait.local_models.embeddings.sentence_transformer import SentenceTransformerEmbeddings
    emb = SentenceTransformerEmbeddings()
    vectors = emb.embed_documents(["first text", "second text"])
    query = emb.invoke("which text?")      # same as emb.embed_query("which text?")
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from plait.defaults import require
from plait.runnable import Runnable


class Embeddings(Runnable[Any, Any]):
    """Base class of embedding models. Subclasses implement :meth:`embed_documents`."""

    #: Largest number of tokens one text may have; longer texts are truncated by the model.
    #: ``None`` where unknown. Splitters use it to size chunks.
    max_tokens: int | None = None
    #: The model id (``model=`` in requests to a server that serves it); ``None`` where unnamed.
    model_name: str | None = None

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        raise NotImplementedError(f"{type(self).__name__} must implement embed_documents()")

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query text."""
        return self.embed_documents([text])[0]

    def embed_array(self, texts: Sequence[str]) -> Any:
        """The vectors as one float32 numpy array of shape ``(len(texts), dim)``."""
        require("numpy", "chroma")
        import numpy as np

        vectors = self.embed_documents(texts)
        if not vectors:
            return np.zeros((0, 0), dtype=np.float32)
        return np.asarray(vectors, dtype=np.float32)

    async def aembed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, list(texts))

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts as the model sees them; backends with a tokenizer override this."""
        raise NotImplementedError(f"{type(self).__name__} has no tokenizer to count tokens with")

    # --- the Runnable side -----------------------------------------------------------------------
    def invoke(self, input: Any, **kwargs: Any) -> Any:
        """A string gives one vector; a list of strings gives a list of vectors."""
        if isinstance(input, str):
            return self.embed_query(input)
        return self.embed_documents(list(input))

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        if isinstance(input, str):
            return await self.aembed_query(input)
        return await self.aembed_documents(list(input))
