"""Fixtures for local-model tests: the bundled SmolLM2, loaded once per session."""

from __future__ import annotations

import time
from typing import Any

import pytest


@pytest.fixture(scope="session")
def smollm2() -> Any:
    """The default local chat model, loaded (the first load converts the GGUF: ~20-40 s on 2 cores)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from plait.local_models.llm.transformers_chat import TransformersChatModel

    start = time.perf_counter()
    model = TransformersChatModel().load()
    model.first_load_s = time.perf_counter() - start  # type: ignore[attr-defined]
    return model


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2: Any) -> Any:
    """transformers' tokenizer for the bundled model (the model itself runs on a lighter ChatTokenizer)."""
    from transformers import AutoTokenizer

    from plait.local_models.llm.gguf_cache import cached_gguf_folder

    return AutoTokenizer.from_pretrained(cached_gguf_folder(smollm2.spec))
