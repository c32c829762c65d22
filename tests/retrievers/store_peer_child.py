"""Run by test_store_processes and test_chroma_server_processes in a subprocess: another process on
the same store (an embedded data directory, or a Chroma server with this process's own lexical index).

It opens the store and queries it once (so it is already open), says ``ready``, then for every line
on stdin answers one JSON line: ``query ID`` (what lexical and dense search find for that chunk's
text and vector), ``write ID [WORD]`` (upserts the chunk, with WORD in its text), ``delete ID``,
``hybrid WORDS`` (the ids a hybrid query returns), ``clear``. The vectors are the deterministic fake ones of
:func:`vector`, so no embedding model loads here.
Usage: python store_peer_child.py STORE_DIR|http://HOST:PORT COLLECTION [SIDECAR]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plait.messages import Document
from plait.retrievers.chroma import ChromaStore

DIM = 384


def text(chunk_id: str, word: str = "") -> str:
    return f"The {chunk_id} marker word appears only in chunk {chunk_id}. {word}".strip()


def vector(chunk_id: str) -> np.ndarray:
    v = np.random.default_rng(zlib.crc32(chunk_id.encode())).standard_normal(DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


class MarkerVectors:
    """Embeddings for hybrid queries without a model: a query's vector is :func:`vector` of its text."""

    dim = DIM

    def embed_query(self, query: str) -> list[float]:
        return vector(query).tolist()

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([vector(t) for t in texts])

    def warm_up(self) -> None:
        pass


def open_store(target: str, collection: str, sidecar: str | None = None) -> ChromaStore:
    if target.startswith("http://"):
        host, port = target.removeprefix("http://").rsplit(":", 1)
        return ChromaStore.http(collection, host=host, port=int(port), sidecar=sidecar,
                                embeddings=MarkerVectors())  # type: ignore[arg-type]
    return ChromaStore(collection, path=target, embeddings=MarkerVectors())  # type: ignore[arg-type]


def write(store: ChromaStore, chunk_id: str, word: str = "") -> None:
    store.upsert([Document(content=text(chunk_id, word), id=chunk_id)], embeddings=vector(chunk_id)[None, :])


def found(store: ChromaStore, chunk_id: str) -> dict[str, list[str | None]]:
    return {"lexical": [d.id for d in store.lexical_search(chunk_id, k=3)],
            "dense": [d.id for d in store.similarity_search_by_vector(vector(chunk_id), k=1)]}


def hybrid(store: ChromaStore, words: str) -> list[str | None]:
    return [d.id for d in store.as_retriever("hybrid", k=5).invoke(words)]


CHILD = Path(__file__)


class Peer:
    """Another OS process with the store open (this script), driven line by line from a test."""

    def __init__(self, *args: str | Path) -> None:
        self.proc = subprocess.Popen([sys.executable, str(CHILD), *map(str, args)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=60)
            raise AssertionError(f"the peer process exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
        return line.strip()

    def ask(self, line: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        assert self.proc.returncode == 0, self.proc.stderr.read() if self.proc.stderr else ""


def main() -> None:
    store = open_store(*sys.argv[1:4])
    store.lexical_search("warm", k=1)
    store.similarity_search_by_vector(vector("warm"), k=1)
    print("ready", flush=True)
    for line in sys.stdin:
        action, _, rest = line.strip().partition(" ")
        if action == "query":
            print(json.dumps(found(store, rest)), flush=True)
        elif action == "hybrid":
            print(json.dumps(hybrid(store, rest)), flush=True)
        elif action == "clear":
            store.clear()
            print(json.dumps({"cleared": store.collection_name}), flush=True)
        elif action == "delete":
            store.delete([rest])
            print(json.dumps({"deleted": rest}), flush=True)
        else:
            chunk_id, _, word = rest.partition(" ")
            write(store, chunk_id, word)
            print(json.dumps({"wrote": chunk_id}), flush=True)


if __name__ == "__main__":
    main()
