"""Run by test_store_processes in a subprocess: a second process on the same embedded store.

It opens the store and queries it once (so it is already open), says ``ready``, then for every line
``query ID`` / ``write ID`` on stdin answers one JSON line: what lexical and dense search find for
that chunk's text and vector, or that it wrote the chunk. The vectors are the deterministic fake ones
of :func:`vector`, so no embedding model loads here.
Usage: python store_peer_child.py STORE_DIR COLLECTION
"""

from __future__ import annotations

import json
import sys
import zlib

import numpy as np

from plait.messages import Document
from plait.retrievers.chroma import ChromaStore

DIM = 384


def text(chunk_id: str) -> str:
    return f"The {chunk_id} marker word appears only in chunk {chunk_id}."


def vector(chunk_id: str) -> np.ndarray:
    v = np.random.default_rng(zlib.crc32(chunk_id.encode())).standard_normal(DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def found(store: ChromaStore, chunk_id: str) -> dict[str, list[str | None]]:
    return {"lexical": [d.id for d in store.lexical_search(chunk_id, k=3)],
            "dense": [d.id for d in store.similarity_search_by_vector(vector(chunk_id), k=1)]}


def main() -> None:
    path, collection = sys.argv[1:3]
    store = ChromaStore(collection, path=path)
    store.lexical_search("warm", k=1)
    store.similarity_search_by_vector(vector("warm"), k=1)
    print("ready", flush=True)
    for line in sys.stdin:
        action, chunk_id = line.split()
        if action == "query":
            print(json.dumps(found(store, chunk_id)), flush=True)
        else:
            store.upsert([Document(content=text(chunk_id), id=chunk_id)], embeddings=vector(chunk_id)[None, :])
            print(json.dumps({"wrote": chunk_id}), flush=True)


if __name__ == "__main__":
    main()
