"""Served objects shared by the serving tests (importable as ``tests.serve.apps:NAME`` by the CLI)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from plait.chains.rag import RAGChain
from plait.embeddings import Embeddings
from plait.fake import FakeChatModel
from plait.messages import Document, ImageResult
from plait.runnable import Lambda, Runnable

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


class SquarePainter(Runnable[Any, ImageResult]):
    """A tiny image model: squares in the colour named in the prompt, in the image-model interface
    (a prompt string or a dict with prompt, num_images, width, height, seed)."""

    produces_images = True
    model_name = "painter"

    def invoke(self, input: Any, **kwargs: Any) -> ImageResult:
        from PIL import Image

        params = {"prompt": input} if isinstance(input, str) else dict(input)
        prompt = params["prompt"]
        if not prompt.strip():
            raise ValueError("The prompt is empty: describe the image to draw")
        width, height = params.get("width", 16), params.get("height", 16)
        if width <= 0 or height <= 0 or width > 64 or height > 64:
            raise ValueError(f"Size {width}x{height} is out of range: width and height must be 1..64")
        color = "red" if "red" in prompt else "green" if "green" in prompt else "blue"
        images = [Image.new("RGB", (width, height), color) for _ in range(params.get("num_images", 1))]
        return ImageResult(images=images, parameters={**params, "width": width, "height": height},
                           model=self.model_name)


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
