"""Fine-tuning on an OpenAI-compatible server: upload the file, start a job, follow it to the end.

Through the official ``openai`` SDK: ``files.create(purpose="fine-tune")``, then
``fine_tuning.jobs.create``, then ``fine_tuning.jobs.retrieve`` and ``list_events`` every
``poll_seconds`` until the job succeeds, fails or is cancelled, printing each new event once, oldest
first. The server is ``base_url`` / ``api_key`` (else ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``,
as for :class:`~plait.remote.openai_chat.OpenAIChatModel`).

Example::

    from plait.tune.remote import run_job
    job = run_job("train.jsonl", "gpt-4o-mini-2024-07-18", suffix="support")
    job["fine_tuned_model"]   # e.g. "ft:gpt-4o-mini-2024-07-18:org:support:abc123", usable as openai:...
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from plait.remote._openai import OpenAISettings, RemoteModelError

DONE = ("succeeded", "failed", "cancelled")


def _plain(obj: Any) -> dict[str, Any]:
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


def run_job(data: str | os.PathLike[str], model: str, *, base_url: str | None = None, api_key: str | None = None,
            validation: str | os.PathLike[str] | None = None, suffix: str | None = None, seed: int | None = None,
            epochs: int | None = None, follow: bool = True, poll_seconds: float = 10.0,
            log: Callable[[str], Any] | None = print) -> dict[str, Any]:
    """Upload ``data`` (and ``validation``), start a fine-tuning job of ``model``; with ``follow``, wait
    for it to finish, passing each job event's message to ``log``. Returns the job as a dict
    (``status``, ``fine_tuned_model``, ``trained_tokens``, ``error``...)."""
    import openai

    say = log or (lambda line: None)
    client = OpenAISettings(base_url, api_key).client()
    try:
        with open(data, "rb") as f:
            training = client.files.create(file=f, purpose="fine-tune")
        say(f"uploaded {data} as {training.id}")
        validation_id = None
        if validation is not None:
            with open(validation, "rb") as f:
                validation_id = client.files.create(file=f, purpose="fine-tune").id
        options: dict[str, Any] = {"model": model, "training_file": training.id}
        if validation_id:
            options["validation_file"] = validation_id
        if suffix:
            options["suffix"] = suffix
        if seed is not None:
            options["seed"] = seed
        if epochs is not None:
            options["hyperparameters"] = {"n_epochs": epochs}
        job = client.fine_tuning.jobs.create(**options)
        say(f"started fine-tuning job {job.id} ({job.status})")
        seen: set[str] = set()
        while follow:
            job = client.fine_tuning.jobs.retrieve(job.id)
            # the events after the job's state, so the last ones of a finished job are shown too
            events = client.fine_tuning.jobs.list_events(fine_tuning_job_id=job.id, limit=100).data
            for event in sorted(events, key=lambda e: (e.created_at, e.id)):
                if event.id not in seen:
                    seen.add(event.id)
                    say(f"[{event.level}] {event.message}")
            if job.status in DONE:
                break
            time.sleep(poll_seconds)
    except openai.APIStatusError as e:
        raise RemoteModelError(f"The server refused the fine-tuning request ({e.status_code}): {e.message}",
                               e.status_code) from e
    except openai.APIConnectionError as e:
        raise RemoteModelError(f"Could not reach {client.base_url}: {e}. Check --base-url / OPENAI_BASE_URL.") from e
    result = _plain(job)
    if job.status == "succeeded":
        say(f"job {job.id} succeeded: {job.fine_tuned_model} ({job.trained_tokens} tokens trained); "
            f"use it as --model openai:{job.fine_tuned_model}")
    elif job.status in DONE:
        message = getattr(job.error, "message", None) if job.error else None
        say(f"job {job.id} {job.status}" + (f": {message}" if message else ""))
    return result
