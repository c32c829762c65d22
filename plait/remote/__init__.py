"""Backends for OpenAI-compatible servers (OpenAI, vLLM, Ollama, llama.cpp server, plait serve).

Chat (:class:`OpenAIChatModel`), embeddings (:class:`OpenAIEmbeddings`) and image generation
(:class:`OpenAIImageModel`), all through the official ``openai`` SDK, which is imported on first
use (``pip install 'plait[openai]'``).
"""

from plait.remote._openai import RemoteModelError, RemoteTimeoutError, StreamInterruptedError
from plait.remote.openai_chat import OpenAIChatModel
from plait.remote.openai_embeddings import OpenAIEmbeddings
from plait.remote.openai_images import OpenAIImageModel

__all__ = ["OpenAIChatModel", "OpenAIEmbeddings", "OpenAIImageModel", "RemoteModelError", "RemoteTimeoutError",
           "StreamInterruptedError"]
