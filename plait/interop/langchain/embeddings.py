"""plait embeddings as LangChain ``Embeddings``.

``PlaitEmbeddings(model="local")`` is the bundled all-MiniLM-L6-v2 (one instance per process, shared
with plait's stores), ``"local:PATH_OR_ID"`` another sentence-transformers model,
``"openai:MODEL"`` an OpenAI-compatible embeddings server (``base_url`` / ``api_key``, else
``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``), and a plait :class:`~plait.embeddings.Embeddings` object
is used as it is. Weights load on the first call; the async methods use the backend's native
async client where it has one.

Example::

    from plait.interop.langchain import PlaitEmbeddings

    emb = PlaitEmbeddings(model="local")
    emb.embed_query("Which animal purrs?")      # 384 floats
"""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings as LCEmbeddings
from pydantic import BaseModel, ConfigDict, PrivateAttr, SecretStr, model_validator

from plait.embeddings import Embeddings

SPECS = ("local", "local:PATH_OR_ID", "openai:MODEL")


def embeddings_from_spec(spec: str, *, base_url: str | None = None, api_key: str | None = None) -> Embeddings:
    """The plait embeddings a spec string names (see the module docstring). Weights load on first use."""
    kind, sep, rest = spec.strip().partition(":")
    if kind == "local":
        if base_url or api_key:
            raise ValueError(f"base_url and api_key are for 'openai:MODEL' specs; {spec!r} runs in this process")
        if sep and not rest:
            raise ValueError("'local:' needs a model path or hub id after the colon, or use plain 'local'")
        from plait.local_models.embeddings.sentence_transformer import (
            SentenceTransformerEmbeddings,
            default_embeddings,
        )

        return SentenceTransformerEmbeddings(rest) if rest else default_embeddings()
    if kind == "openai":
        if not rest:
            raise ValueError("'openai' needs a model name: 'openai:MODEL', e.g. 'openai:text-embedding-3-small'")
        from plait.remote.openai_embeddings import OpenAIEmbeddings

        return OpenAIEmbeddings(rest, base_url=base_url, api_key=api_key)
    raise ValueError(f"Unknown embeddings spec {spec!r}: use one of {', '.join(SPECS)}")


def _floats(vector: Any) -> list[float]:
    return [float(x) for x in vector]


class PlaitEmbeddings(BaseModel, LCEmbeddings):
    """plait embeddings (``"local"``, ``"openai:MODEL"`` or an ``Embeddings`` object) for LangChain.

    Example::

        store = InMemoryVectorStore(PlaitEmbeddings(model="local"))
    """

    model: Any = "local"
    base_url: str | None = None
    api_key: SecretStr | None = None

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    _plait: Embeddings = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> PlaitEmbeddings:
        if isinstance(self.model, Embeddings):
            if self.base_url or self.api_key:
                raise ValueError("base_url and api_key go with a spec string ('openai:MODEL')")
            self._plait = self.model
        elif isinstance(self.model, str):
            key = self.api_key.get_secret_value() if self.api_key is not None else None
            self._plait = embeddings_from_spec(self.model, base_url=self.base_url, api_key=key)
        else:
            raise TypeError(f"model must be a spec string ('local', 'openai:MODEL') or plait Embeddings, "
                            f"not {type(self.model).__name__}")
        return self

    @property
    def plait_embeddings(self) -> Embeddings:
        """The plait embeddings doing the work."""
        return self._plait

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [_floats(v) for v in self._plait.embed_documents(list(texts))]

    def embed_query(self, text: str) -> list[float]:
        return _floats(self._plait.embed_query(text))

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return [_floats(v) for v in await self._plait.aembed_documents(list(texts))]

    async def aembed_query(self, text: str) -> list[float]:
        return _floats(await self._plait.aembed_query(text))
