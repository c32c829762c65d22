"""How the examples pick their chat model: ``--model`` / $PLAIT_EXAMPLE_MODEL, default the bundled local one."""

from __future__ import annotations

import os
import sys
from typing import Any


def example_model(model: Any = None, **options: Any) -> Any:
    """The model to use: the one given, else ``--model SPEC`` on the command line, else $PLAIT_EXAMPLE_MODEL,
    else ``local`` (SmolLM2, offline). ``openai:MODEL`` reads $OPENAI_BASE_URL / $OPENAI_API_KEY."""
    if model is not None:
        return model.with_options(**options) if options and hasattr(model, "with_options") else model
    from plait.models import chat_model_from_spec

    spec = os.environ.get("PLAIT_EXAMPLE_MODEL", "local")
    if "--model" in sys.argv[:-1]:
        spec = sys.argv[sys.argv.index("--model") + 1]
    return chat_model_from_spec(spec, **options)


def is_bundled(model: Any) -> bool:
    """Whether ``model`` is the bundled SmolLM2-135M (it shows the plumbing, not answer quality)."""
    return "135m" in str(getattr(model, "model_name", "")).lower()


def bigger_model_note(what: str) -> str:
    return (f"(note: {what} The bundled 135M model shows the plumbing, not quality; run this example with a real "
            "model for that: --model openai:MODEL, with $OPENAI_BASE_URL for vLLM or Ollama)")
