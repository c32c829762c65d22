"""Retrieval at scale: N chunks of real text written through plait's store, then timed queries.

The chunks are sentences of SciFact's corpus (five per chunk, two chunks per document, with a
splitter's metadata and a ``topic`` to filter on; :func:`synthetic_chunks`), written in batches
through :class:`plait.retrievers.chroma.ChromaStore` (embedded Chroma, cosine HNSW) with the
lexical index of :mod:`plait.retrievers.lexical` beside it (see ``open_store``: the one place
that changes once the store opens that index itself). ``--fake-embeddings`` gives every text a
deterministic random unit vector (384-d), so the run measures everything but the model.

Figures (last line, one JSON object):
- ``write_chunks_per_s``: chunks written through the store (Chroma + lexical), per second;
  ``lexical_write_chunks_per_s``: the lexical index's share alone, timed inside the same run.
- ``add_one_then_query_ms``: upsert one chunk with an unseen word, then a hybrid query that must
  return it (median of 5).
- ``bm25_p50_ms``, ``hybrid_p50_ms``, ``filtered_p50_ms`` (hybrid with ``{"topic": ...}``): k=10,
  100 SciFact claims as queries; ``filtered_plans``: how their dense side asked Chroma
  (:mod:`plait.retrievers.chroma_search`). ``filter_count_ms``: counting the chunks that pass the
  filter in the lexical engine (every filtered query after a write does); ``filter_ids_ms``: listing
  their ids (the id-restricted plan does it, and the over-fetch once the filter is asked again
  before the next write; both kept until the next write).
- ``peak_rss_mb``: the process's peak resident memory (Chroma runs in-process);
  ``lexical_disk_mb``, ``chroma_disk_mb``: size on disk.
- ``bigfile_speed_ratio``, ``bigfile_peak_rss_mb``: one ``--bigfile-mb`` (20) MB single-line text
  file of the same sentences ingested through ``Indexer`` (streaming loader and splitter, token
  chunks of the MiniLM tokenizer, batches committed as they fill), in a fresh process; the ratio
  is its chunks per second over that of small files (10 kB each, 200 or as much text as the big
  file if less) of the same text, ingested the same way in another fresh process; the peak RSS
  is that process's. ``--bigfile-only`` runs just this part; ``--bigfile-mb 0`` skips it.

Timings are wall clock on a shared machine: run with ``nice`` and expect +-30% noise.

    nice python benchmarks/retrieval_scale.py --chunks 100000 --fake-embeddings
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
TOPICS = [f"topic{i}" for i in range(10)]


def sentences(data: Path = SCIFACT) -> list[str]:
    """Every sentence of the corpus (split after '.'), at least 20 characters long."""
    out: list[str] = []
    with open(data / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            out += [s.strip() for s in re.split(r"(?<=\.)\s+", text) if len(s.strip()) >= 20]
    return out


def synthetic_chunks(n: int, *, seed: int = 0, data: Path = SCIFACT) -> Iterator[tuple[str, str, dict[str, object]]]:
    """``n`` chunks ``(id, text, metadata)`` of real sentences, deterministic for a given seed.

    Five sentences per chunk, two chunks per document ``doc{d}.txt``, with a splitter's metadata
    (``source``, ``format``, ``chunk``, ``start``, ``end``) and a ``topic`` (one of 10) to filter on.
    """
    pool = sentences(data)
    rng = random.Random(seed)
    end = 0
    for i in range(n):
        d, c = divmod(i, 2)
        text = " ".join(rng.choice(pool) for _ in range(5))
        start = 0 if c == 0 else end + 1  # the two chunks of a document follow each other
        end = start + len(text)
        meta: dict[str, object] = {"source": f"doc{d}.txt", "format": "text", "topic": TOPICS[d % len(TOPICS)],
                                   "chunk": c, "start": start, "end": end}
        yield f"d{d}-c{c}", text, meta


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class FakeEmbeddings:
    """Deterministic random unit vectors (one per distinct text): everything but the model."""

    dim = 384
    max_tokens = 256
    model_name = "fake"

    def embed_array(self, texts: Sequence[str]) -> Any:
        import numpy as np

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


# ==== THE WIRING SWITCH ====================================================================
# Set WIRED = True once ChromaStore opens a LexicalIndex as its lexical twin by itself; until then
# the store is opened without its own twin and a LexicalIndex is put in its place, which is what
# the wiring will do inside the store (every write goes to both; the bm25 and hybrid retrievers
# search it). Nothing else in this script changes.
WIRED = True


def open_store(path: Path, embeddings: Any) -> tuple[Any, Path]:
    """The store under test and the folder of its lexical index."""
    from plait.retrievers.chroma import ChromaStore
    from plait.retrievers.lexical import LexicalIndex

    if WIRED:
        store = ChromaStore("scale", path=path / "chroma", embeddings=embeddings)
        lexical = store.lexical_index()
        assert isinstance(lexical, LexicalIndex), f"the store's lexical index is a {type(lexical).__name__}"
        assert lexical.path is not None
        return store, lexical.path
    store = ChromaStore("scale", path=path / "chroma", embeddings=embeddings, bm25=False)
    store.bm25 = LexicalIndex(path / "lexical")
    return store, path / "lexical"
# ==== END OF THE WIRING SWITCH ===============================================================


def write(store: Any, chunks: Iterator[tuple[str, str, dict[str, Any]]], batch: int,
          fake: bool) -> tuple[int, float, float]:
    """Write every chunk through the store; (chunks, seconds, seconds spent in the lexical index)."""
    from plait.messages import Document

    lexical = store.lexical_index()
    spent = [0.0]
    upsert = lexical.upsert

    def timed(*args: Any, **kwargs: Any) -> None:
        t = time.perf_counter()
        try:
            upsert(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t

    lexical.upsert = timed
    n, t0 = 0, time.perf_counter()
    docs: list[Document] = []
    for cid, text, meta in chunks:
        docs.append(Document(id=cid, content=text, metadata=meta))
        if len(docs) == batch:
            store.upsert(docs, embeddings=store.embeddings.embed_array([d.content for d in docs]) if fake else None)
            n += len(docs)
            docs = []
            if n % (batch * 10) == 0:
                print(f"  {n} chunks, {n / (time.perf_counter() - t0):.0f}/s", flush=True)
    if docs:
        store.upsert(docs, embeddings=store.embeddings.embed_array([d.content for d in docs]) if fake else None)
        n += len(docs)
    seconds = time.perf_counter() - t0
    del lexical.upsert  # the bound method again
    return n, seconds, spent[0]


def _text(size: int, rng: random.Random, pool: list[str]) -> str:
    """About ``size`` characters of sentences on one line."""
    parts: list[str] = []
    n = 0
    while n < size:
        parts.append(rng.choice(pool))
        n += len(parts[-1]) + 1
    return " ".join(parts)


def _ingest_timed(folder: str, fake: bool, queue: Any) -> None:
    """In a fresh process: ingest ``folder`` into a new store; report chunks, seconds and peak RSS."""
    sys.path.insert(0, str(ROOT))
    from plait.retrievers.chroma import ChromaStore
    from plait.retrievers.indexing import Indexer
    from plait.retrievers.splitters import TokenSplitter

    if fake:
        from transformers import AutoTokenizer

        from plait.defaults import embedding_model_path

        embeddings: Any = FakeEmbeddings()
        splitter = TokenSplitter(tokenizer=AutoTokenizer.from_pretrained(embedding_model_path()), chunk_size=256)
    else:
        from plait.local_models.embeddings.sentence_transformer import SentenceTransformerEmbeddings

        embeddings = SentenceTransformerEmbeddings()
        embeddings.embed_query("warm up")
        splitter = TokenSplitter(embeddings)
    store = ChromaStore("bigfile", path=Path(folder) / "store", embeddings=embeddings)
    store.count()  # open Chroma and the lexical index before the clock starts
    t0 = time.perf_counter()
    report = Indexer(store, splitter=splitter, progress=False).ingest(Path(folder) / "files")
    seconds = time.perf_counter() - t0
    queue.put({"chunks": report.chunks_written, "seconds": seconds, "peak_rss_mb": peak_rss_mb(),
               "skipped": len(report.skipped)})


def bigfile(mb: float, fake: bool, data: Path = SCIFACT) -> dict[str, Any]:
    """Time one ``mb`` MB single-line file against small files of the same sentences (see the docstring)."""
    import multiprocessing

    if mb <= 0:
        return {"bigfile_speed_ratio": None, "bigfile_peak_rss_mb": None}
    pool, rng = sentences(data), random.Random(1)
    ctx = multiprocessing.get_context("spawn")
    runs = {}
    with tempfile.TemporaryDirectory(prefix="plait-bigfile-") as tmp:
        for kind in ("small", "big"):
            files = Path(tmp) / kind / "files"
            files.mkdir(parents=True)
            if kind == "big":
                (files / "big.txt").write_text(_text(int(mb * 1e6), rng, pool), encoding="utf-8")
            else:
                for i in range(max(20, min(200, int(mb * 100)))):  # as much text as the big file, up to 2 MB
                    (files / f"small{i:03d}.txt").write_text(_text(10_000, rng, pool), encoding="utf-8")
            print(f"bigfile: ingesting the {kind} file(s) in a fresh process ...", flush=True)
            queue = ctx.Queue()
            proc = ctx.Process(target=_ingest_timed, args=(str(Path(tmp) / kind), fake, queue))
            proc.start()
            runs[kind] = queue.get()
            proc.join()
            assert not runs[kind]["skipped"], f"the {kind} run skipped files"
            print(f"  {runs[kind]['chunks']} chunks in {runs[kind]['seconds']:.1f} s, "
                  f"peak RSS {runs[kind]['peak_rss_mb']:.0f} MB", flush=True)
    speed = {k: r["chunks"] / r["seconds"] for k, r in runs.items()}
    return {"bigfile_speed_ratio": round(speed["big"] / speed["small"], 3),
            "bigfile_peak_rss_mb": round(runs["big"]["peak_rss_mb"]),
            "bigfile_mb": mb, "bigfile_chunks": runs["big"]["chunks"],
            "bigfile_chunks_per_s": round(speed["big"], 1), "smallfiles_chunks_per_s": round(speed["small"], 1),
            "smallfiles_peak_rss_mb": round(runs["small"]["peak_rss_mb"])}


def p50(fn: Any, queries: Sequence[str]) -> float:
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--fake-embeddings", action="store_true", help="random unit vectors instead of the model")
    ap.add_argument("--batch", type=int, default=2000, help="chunks per store write (default %(default)s)")
    ap.add_argument("--data", type=Path, default=SCIFACT)
    ap.add_argument("--keep", type=Path, default=None, help="write the store here and keep it (default: a temp dir)")
    ap.add_argument("--reuse", action="store_true",
                    help="with --keep: a store already there with --chunks chunks is queried, not written again "
                         "(no write figures)")
    ap.add_argument("--bigfile-mb", type=float, default=20, help="size of the one-line file (0: skip that part)")
    ap.add_argument("--bigfile-only", action="store_true", help="time only the one-line file against small files")
    args = ap.parse_args()
    if args.bigfile_only:
        figures = {"fake_embeddings": args.fake_embeddings, **bigfile(args.bigfile_mb, args.fake_embeddings, args.data)}
        print(json.dumps(figures))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from retrieval_scifact import load_beir

    embeddings: Any = FakeEmbeddings()
    if not args.fake_embeddings:
        from plait.local_models.embeddings.sentence_transformer import SentenceTransformerEmbeddings

        embeddings = SentenceTransformerEmbeddings()
        embeddings.embed_query("warm up")
    _, queries, qrels = load_beir(args.data)
    claims = [queries[q] for q in list(qrels)[:100]]
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="plait-scale-"))
    out: dict[str, Any] = {"chunks": args.chunks, "fake_embeddings": args.fake_embeddings, "wired": WIRED}
    try:
        store, lexical_dir = open_store(tmp, embeddings)
        added_ids = [f"added-{j}" for j in range(5)]  # the chunks the add-one figure writes (below)
        if args.reuse and args.keep is not None and store.count() - len(store.get(added_ids)) == args.chunks:
            print(f"reusing the {args.chunks} chunks already in {tmp}", flush=True)
            out["reused"] = True
        else:
            print(f"writing {args.chunks} chunks in batches of {args.batch} ...", flush=True)
            n, seconds, lexical_s = write(store, synthetic_chunks(args.chunks, data=args.data), args.batch,
                                          args.fake_embeddings)
            out.update(write_chunks_per_s=round(n / seconds, 1), write_seconds=round(seconds, 1),
                       lexical_write_chunks_per_s=round(n / lexical_s, 1) if lexical_s else None)
        bm25 = store.as_retriever("bm25", k=10)
        hybrid = store.as_retriever("hybrid", k=10)
        filtered = store.as_retriever("hybrid", k=10, filter={"topic": TOPICS[3]})
        for r in (bm25, hybrid, filtered):
            r.invoke(claims[0])  # first-use costs (the HNSW index load) are not query latency
        out["bm25_p50_ms"] = p50(bm25.invoke, claims)
        out["hybrid_p50_ms"] = p50(hybrid.invoke, claims)
        store.dense_plans.clear()
        out["filtered_p50_ms"] = p50(filtered.invoke, claims)
        out["filtered_plans"] = dict(store.dense_plans)  # how the dense side asked Chroma (chroma_search)
        lexical = store.lexical_index()  # the filter's chunks, as the first filtered query after a write reads them
        ids_ms, count_ms = [], []
        for _ in range(5):
            lexical._ids_cache.clear()
            t = time.perf_counter()
            passing = lexical.passing({"topic": TOPICS[3]})
            count_ms.append((time.perf_counter() - t) * 1000)
            listed = passing.ids() is not None  # False past tantivy's 65,000 terms per aggregation
            ids_ms.append((time.perf_counter() - t) * 1000)
        out["filter_count_ms"] = round(statistics.median(count_ms), 1)
        out["filter_ids_ms"] = round(statistics.median(ids_ms), 1) if listed else None
        got = filtered.invoke(claims[1])
        assert got and all(d.metadata["topic"] == TOPICS[3] for d in got), "the filter leaked"
        added = []
        from plait.messages import Document

        for j in range(5):
            word = f"zqx{j}vortexa"
            doc = Document(id=added_ids[j], content=f"A new note on {word} and telomerase.",
                           metadata={"source": f"added{j}.txt", "format": "text", "topic": TOPICS[0]})
            t = time.perf_counter()
            store.upsert([doc], embeddings=embeddings.embed_array([doc.content]))
            found = [d.id for d in hybrid.invoke(f"{word} telomerase")]
            added.append((time.perf_counter() - t) * 1000)
            assert doc.id in found, f"the chunk just written was not found: {found}"
        out["add_one_then_query_ms"] = round(statistics.median(added), 1)
        out["peak_rss_mb"] = round(peak_rss_mb())
        out["lexical_disk_mb"] = round(dir_mb(lexical_dir), 1)
        out["chroma_disk_mb"] = round(dir_mb(tmp / "chroma"), 1)
        out.update(bigfile(args.bigfile_mb, args.fake_embeddings, args.data))
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    for key, value in out.items():
        print(f"{key:28}{value}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
