"""Embedding work spread over two real ``plait serve --embeddings local`` servers (OS processes).

OpenAIEmbeddings sends concurrent batches to both; when one is killed mid-run, its batches fail
over to the other and an ingest finishes; when every server is gone the ingest stops with an
error, and run again against a new server it resumes from its last committed batch (only the
chunks not yet stored are embedded).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from plait.remote._openai import RemoteModelError
from plait.remote.openai_embeddings import OpenAIEmbeddings
from plait.retrievers.chroma import ChromaStore
from plait.retrievers.indexing import DefaultSplitter, Indexer
from tests.retrievers.conftest import free_port

pytestmark = pytest.mark.slow  # each server loads MiniLM in its own process


class Server:
    """``plait serve --embeddings local`` in its own process, one access-log line per request."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / f"serve-{self.port}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "plait.cli", "serve", "--embeddings", "local", "--port", str(self.port),
                 "--access-log"], stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.getcwd()})
        deadline = time.monotonic() + 600
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(self.url + "/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the embeddings server did not warm up"
            time.sleep(0.2)

    def requests(self) -> int:
        return self.log.read_text().count("POST /v1/embeddings")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture
def servers(tmp_path) -> Iterator[list[Server]]:
    started = [Server(tmp_path / "servers") for _ in range(2)]
    yield started
    for s in started:
        s.kill()


class Counted(OpenAIEmbeddings):
    """OpenAIEmbeddings that counts the texts it sends and can run a step before a given batch."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches = 0
        self.texts = 0
        self.before: dict[int, object] = {}

    def _send(self, batch, first):
        self.batches += 1
        step = self.before.pop(self.batches, None)
        if step is not None:
            step()  # type: ignore[operator]
        self.texts += len(batch)
        return super()._send(batch, first)


def remote(*servers: Server, **kw) -> Counted:
    return Counted("plait-embeddings", base_url=[s.url + "/v1" for s in servers], batch_size=2,
                   max_concurrency=4, max_tokens=256, **kw)


TEXTS = [f"Note {i}: the {w} crossed the river at dawn, carrying {i} baskets of figs." for i, w in
         enumerate(["fox", "heron", "ferry", "caravan", "mule", "cart", "boat", "pilgrim"] * 3)]


def test_batches_spread_over_two_servers_and_match_the_local_model(servers, embeddings):
    emb = remote(*servers)
    vectors = emb.embed_array(TEXTS)
    local = embeddings.embed_array(TEXTS)
    assert vectors.shape == local.shape
    assert (vectors * local).sum(axis=1).min() > 0.99  # same model; dtypes may differ
    assert servers[0].requests() > 0 and servers[1].requests() > 0
    assert servers[0].requests() + servers[1].requests() == len(TEXTS) // 2


def test_an_ingest_survives_a_killed_server_and_resumes_after_a_crash(servers, tmp_path, embeddings):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(TEXTS):
        (docs / f"note{i:02d}.txt").write_text(text)
    store_dir = tmp_path / "store"

    splitter = DefaultSplitter(embeddings)  # the served model's tokenizer, here (the servers' model is MiniLM)

    def indexer(emb: OpenAIEmbeddings) -> Indexer:
        return Indexer(ChromaStore("fleet", path=store_dir, embeddings=emb), splitter=splitter, batch_chunks=4,
                       progress=False)

    # 1. one server is killed after the 3rd batch: its batches go to the other, the ingest finishes
    emb = remote(*servers)
    emb.before[3] = servers[0].kill
    report = indexer(emb).ingest(docs)
    assert report.files_added == len(TEXTS) and not report.skipped
    assert servers[0].proc.poll() is not None and servers[1].requests() > 0
    # 2. more files; the last server dies mid-run: the ingest stops with an error ...
    for i, text in enumerate(TEXTS):
        (docs / f"more{i:02d}.txt").write_text(text.replace("Note", "Memo"))
    emb = remote(*servers, timeout=20)
    emb.before[5] = servers[1].kill
    with pytest.raises(RemoteModelError):
        indexer(emb).ingest(docs)
    stored = ChromaStore("fleet", path=store_dir, embeddings=emb).count()
    assert len(TEXTS) < stored < 2 * len(TEXTS)  # some batches of the second run were committed
    # 3. ... and, run again against a new server, embeds only what was not stored
    third = Server(tmp_path / "servers")
    try:
        emb = remote(third)
        report = indexer(emb).ingest(docs)
        assert report.files_unchanged + report.files_added == 2 * len(TEXTS) and not report.skipped
        assert report.files_unchanged > len(TEXTS)  # the files the stopped run had committed are done
        assert emb.texts == 2 * len(TEXTS) - stored  # only the chunks not yet stored are embedded
        store = ChromaStore("fleet", path=store_dir, embeddings=emb)
        assert store.count() == 2 * len(TEXTS)
        assert store.as_retriever("bm25", k=1).invoke("Memo 7 baskets of figs")[0].content == TEXTS[7].replace(
            "Note", "Memo")
    finally:
        third.kill()
