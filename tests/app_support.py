"""Shared fixtures of the application tests (chains end to end, CLI, examples).

Import them into a test module with ``from tests.app_support import local_model  # noqa: F401``.
The real local model loads once per test session (the first load in a fresh PLAIT_HOME also
converts the bundled GGUF, ~20-40 s on 2 cores).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def local_model():
    from plait.local_models.llm.transformers_chat import TransformersChatModel

    return TransformersChatModel().load()


@pytest.fixture(scope="session")
def embeddings():
    """The bundled MiniLM, loaded once for the session."""
    from plait.local_models.embeddings.sentence_transformer import SentenceTransformerEmbeddings

    emb = SentenceTransformerEmbeddings()
    emb.embed_query("warm up")
    return emb


@pytest.fixture(scope="session")
def docs_store(embeddings):
    """The project's own docs ingested into a collection of the test session's embedded store."""
    from plait.retrievers.chroma import ChromaStore
    from plait.retrievers.indexing import ingest

    store = ChromaStore("app-tests-docs", embeddings=embeddings)
    report = ingest([ROOT / "README.md", ROOT / "docs"], store=store, glob=["**/*.md"], progress=False)
    assert not report.skipped, report.summary()
    return store


def wait_ready(url: str, proc: subprocess.Popen[str] | None = None, timeout: float = 600.0) -> dict:
    """Poll a plait server's /ready until it has warmed up (loading models takes a while on a busy machine).

    ``timeout`` only stops a test that would otherwise hang; it is no speed check.
    """
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.get(url + "/ready")
            if r.status_code == 200 or r.json().get("status") == "failed":
                return r.json()
        except httpx.TransportError:
            pass
        assert proc is None or proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the server did not warm up"
        time.sleep(0.2)
