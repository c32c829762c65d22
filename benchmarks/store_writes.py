"""Where the time of a store write goes: plait's store against raw chromadb, in one process.

Fills a store (``ChromaStore`` with its lexical index, fake 384-d vectors) with ``--fill`` chunks
of ``retrieval_scale.synthetic_chunks``, then writes rounds of ``--batch`` new chunks, each round
once per way, in turns (so a change of the machine's load touches every way alike):

- ``store_B``: ``ChromaStore.upsert`` in calls of B chunks (Chroma, then the lexical index);
- ``chroma_B``: raw chromadb ``collection.upsert`` of the same chunks (ids, vectors, texts,
  metadata), in calls of B, on the store's own collection: the baseline;
- ``chroma_no_texts``: the same without the texts (what Chroma's own full-text index of
  documents costs: embedded Chroma indexes every document's trigrams in SQLite FTS5);
- ``lexical_B``: ``LexicalIndex.upsert`` alone, in calls of B.

B is ``--batch`` (the benchmark's 2,000-ish) and 256 (what ``Indexer`` writes per call).
Prints median microseconds per chunk and chunks per second per way; last line JSON.

    nice python benchmarks/store_writes.py --fill 20000 --batch 2048 --rounds 6
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    from retrieval_scale import FakeEmbeddings, open_store, synthetic_chunks

    from plait.messages import Document
    from plait.retrievers.chroma_client import chroma_metadata

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fill", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="plait-writes-"))
    try:
        emb = FakeEmbeddings()
        store, _ = open_store(tmp, emb)
        source = synthetic_chunks(args.fill + args.batch * args.rounds * 8)

        def take(n: int) -> list[Document]:
            return [Document(id=i, content=t, metadata=m) for i, t, m in (next(source) for _ in range(n))]

        for _ in range(0, args.fill, 2000):
            docs = take(2000)
            store.upsert(docs, embeddings=emb.embed_array([d.content for d in docs]))
        lexical = store.lexical_index()

        def chroma(step: int, texts: bool = True) -> Any:
            def write(docs: list[Document], vecs: Any) -> None:
                for s in range(0, len(docs), step):
                    part = docs[s:s + step]
                    store.collection.upsert(ids=[d.id or "" for d in part], embeddings=vecs[s:s + step],
                                            documents=[d.content for d in part] if texts else None,
                                            metadatas=[chroma_metadata(d.metadata) for d in part])  # type: ignore[misc]
                    assert store._watch is not None
                    store._watch.seen = store._watch.mark()  # this process's write: no reopen
            return write

        def through_store(step: int) -> Any:
            def write(docs: list[Document], vecs: Any) -> None:
                for s in range(0, len(docs), step):
                    store.upsert(docs[s:s + step], embeddings=vecs[s:s + step])
            return write

        def lexical_only(step: int) -> Any:
            def write(docs: list[Document], vecs: Any) -> None:
                for s in range(0, len(docs), step):
                    part = docs[s:s + step]
                    lexical.upsert([d.id or "" for d in part], [d.content for d in part],
                                   [chroma_metadata(d.metadata) or {} for d in part])
            return write

        b = args.batch
        ways = {f"store_{b}": through_store(b), f"chroma_{b}": chroma(b), "store_256": through_store(256),
                "chroma_256": chroma(256), "chroma_no_texts": chroma(b, texts=False),
                f"lexical_{b}": lexical_only(b), "lexical_256": lexical_only(256)}
        times: dict[str, list[float]] = {w: [] for w in ways}
        for r in range(args.rounds):
            for w, write in ways.items():
                docs = take(b)
                vecs = emb.embed_array([d.content for d in docs])
                t = time.perf_counter()
                write(docs, vecs)
                times[w].append((time.perf_counter() - t) / b * 1e6)
            print(f"round {r}: " + ", ".join(f"{w} {times[w][-1]:.0f}" for w in ways) + " us/chunk", flush=True)
        us = {w: round(statistics.median(t)) for w, t in times.items()}
        out = {"fill": args.fill, "batch": b, "rounds": args.rounds, "us_per_chunk": us,
               "chunks_per_s": {w: round(1e6 / v) for w, v in us.items()},
               "load": open("/proc/loadavg").read().split()[:3]}
        print(json.dumps(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
