"""Served objects shared by the serving tests (importable as ``tests.serve.apps:NAME`` by the CLI)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from plait.chains.rag import RAGChain
from plait.embeddings import Embeddings
from plait.fake import FakeChatModel
from plait.messages import Document
from plait.runnable import Lambda

DOCS = [
    Document(content="plait composes steps with the | operator.", metadata={"source": "docs/compose.md", "page": 1}),
    Document(content="plait serve exposes any chain over an OpenAI-compatible API.",
             metadata={"source": "docs/serve.md", "page": 2}),
]


def rag_chain(delay: float = 0.0) -> RAGChain:
    """A real RAG chain (retriever -> numbered passages -> model -> cited answer) on a scripted model."""
    model = FakeChatModel(["Steps compose with the | operator [1]."], delay=delay)
    return RAGChain(Lambda(lambda q: DOCS), model)


def slow_chat() -> FakeChatModel:
    """A model slow enough to be interrupted: 24 tokens, 50 ms apart."""
    return FakeChatModel([" ".join(f"t{i}" for i in range(24))], delay=0.05)


chat = FakeChatModel(["Hello from plait."])


def echo(text: str) -> dict[str, Any]:
    return {"echo": text}


class LetterCounts(Embeddings):
    """A small deterministic embedding: letter frequencies a-z, L2-normalised."""

    model_name = "letters"

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for text in texts:
            counts = [float(text.lower().count(chr(ord("a") + i))) for i in range(26)]
            norm = math.sqrt(sum(c * c for c in counts)) or 1.0
            out.append([c / norm for c in counts])
        return out
