"""Fine-tuning: ``tune(data, model=...)`` adapts a local model with LoRA, or a remote one through the
OpenAI fine-tuning API.

- :mod:`plait.tune.data`: check an OpenAI chat fine-tuning file (bad lines by number, token counts).
- :mod:`plait.tune.lora`: LoRA training with peft (assistant turns only, eval split, checkpoints,
  seeded), writing a PEFT adapter folder with a model card.
- :mod:`plait.tune.remote`: upload the file, start and follow a job through the official ``openai`` SDK.

Example::

    from plait.tune import tune
    figures = tune("train.jsonl", model="local", out="my-adapter", epochs=2)
    # then: plait ask --model local --adapter my-adapter "..."
"""

from __future__ import annotations

import os
from typing import Any


def tune(data: str | os.PathLike[str], model: str = "local", out: str | os.PathLike[str] | None = None,
         **options: Any) -> dict[str, Any]:
    """Fine-tune ``model`` on ``data`` (an OpenAI chat fine-tuning JSONL file); returns the figures.

    ``model``: ``local`` / ``local:PATH_OR_ID`` (LoRA here; ``out`` is required; ``options`` are
    :class:`~plait.tune.lora.TuneConfig` fields plus ``device``, ``merge``, ``progress``, ``log``), or
    ``openai:MODEL`` (a remote job; ``options`` go to :func:`plait.tune.remote.run_job`).
    """
    kind = model.strip().partition(":")[0]
    if kind == "openai":
        from plait.tune.remote import run_job

        return run_job(data, model.partition(":")[2], **options)
    if kind != "local":
        raise ValueError(f"Cannot fine-tune {model!r}: use 'local', 'local:PATH_OR_ID' or 'openai:MODEL'")
    if out is None:
        raise ValueError("Pass out= (the folder the adapter is written to)")
    from plait.tune.lora import TuneConfig, train

    run = {k: options.pop(k) for k in ("device", "merge", "progress", "log") if k in options}
    return train(data, model, out, TuneConfig(**options), **run)


__all__ = ["tune"]
