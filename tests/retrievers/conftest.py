"""Fixtures for the retrieval tests: the real MiniLM, a real `chroma run` server, stores of every kind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from plait.messages import Document

CORPUS = [
    ("cat-1", "Cats purr when they are content and relaxed.", {"topic": "cats", "year": 2019, "lang": "en"}),
    ("cat-2", "A kitten sleeps most of the day and plays at night.", {"topic": "cats", "year": 2021, "lang": "en"}),
    ("dog-1", "Dogs bark to warn their owners about strangers.", {"topic": "dogs", "year": 2020, "lang": "en"}),
    ("dog-2", "Puppies need training, exercise and patience.", {"topic": "dogs", "year": 2023, "lang": "en"}),
    ("space-1", "The James Webb telescope observes infrared light from early galaxies.",
     {"topic": "space", "year": 2022, "lang": "en"}),
    ("space-2", "Mars rovers drill rocks to look for signs of ancient water.",
     {"topic": "space", "year": 2021, "lang": "en"}),
    ("cook-1", "Simmer the tomato sauce for twenty minutes, then add basil.",
     {"topic": "cooking", "year": 2018, "lang": "en"}),
    ("cook-2", "Knead the bread dough until it is smooth and elastic.", {"topic": "cooking", "year": 2020, "lang": "en"}),
    ("part-1", "Replacement part XJ-9000 fits the left hinge of model Q7.",
     {"topic": "parts", "year": 2024, "lang": "en"}),
    ("fr-1", "Le chat dort sur le canapé toute la journée.", {"topic": "cats", "year": 2022, "lang": "fr"}),
]


def corpus_docs() -> list[Document]:
    return [Document(id=i, content=t, metadata=dict(m)) for i, t, m in CORPUS]


@pytest.fixture(scope="session")
def embeddings():
    """The bundled all-MiniLM-L6-v2, loaded once for the whole session."""
    from plait.defaults import default_embeddings

    emb = default_embeddings()
    emb.embed_query("warm up")
    return emb


@pytest.fixture(scope="session")
def corpus_vectors(embeddings):
    """The corpus's vectors, computed once (stores take them instead of re-embedding in every test)."""
    return embeddings.embed_array([t for _, t, _ in CORPUS])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory) -> Iterator[tuple[str, int]]:
    """A real Chroma server (`chroma run`) on 127.0.0.1 and a free port, stopped at the end."""
    exe = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not Path(exe).exists():
        pytest.fail("The `chroma` CLI (from chromadb) is not installed: pip install 'plait[chroma]'")
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = open(path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([exe, "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "CHROMA_TELEMETRY": "false"})
    import httpx

    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"chroma run exited with {proc.returncode}: {(path / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("chroma run did not answer its heartbeat within 60 s")
        time.sleep(0.2)
    yield "127.0.0.1", port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def unique(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory", "persistent", "http"])
def make_store(request, embeddings, tmp_path):
    """A factory of empty stores of one kind (the contract suite runs on each)."""
    from plait.retrievers.chroma import ChromaStore

    kind = request.param
    made = []

    def make(collection: str | None = None, **kwargs):
        name = collection or unique(kind)
        if kind == "memory":
            store = ChromaStore.in_memory(name, embeddings=embeddings, **kwargs)
        elif kind == "persistent":
            store = ChromaStore(name, embeddings=embeddings, path=tmp_path / "chroma", **kwargs)
        else:
            host, port = request.getfixturevalue("chroma_server")
            store = ChromaStore.http(name, host=host, port=port, embeddings=embeddings,
                                     sidecar=tmp_path / "sidecar" / f"{name}.sqlite", **kwargs)
        made.append(store)
        return store

    make.kind = kind  # type: ignore[attr-defined]
    yield make
    for store in made:
        if kind != "persistent":
            store.clear()
