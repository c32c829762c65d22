"""Retrieval quality and speed on a BEIR dataset (default: SciFact), with the LangChain baseline in the same run.

plait: the default ingestion (JSONL loader on title + text, token-aware splitting at the model's
max length, bundled MiniLM with the default dtype, embedded persistent Chroma + BM25 over passages
of whole documents), then dense, BM25 and hybrid (the default retriever: per-document min-max convex
fusion; RRF, DBSF and chunk-by-chunk fusion also reported) retrieval. Chunks are mapped back to
their corpus document (best chunk wins) before scoring. Hybrid nDCG@10 is measured at k=10
(fusion depth follows k), recall@100 at k=200.

LangChain baseline: ``langchain-chroma`` + ``langchain-huggingface`` ``HuggingFaceEmbeddings`` on
the same MiniLM (fp32, its defaults, one document per abstract), and ``langchain-community``
``BM25Retriever``.

Figures: nDCG@10 and recall@100 (BEIR's definitions, binary relevance from qrels), ingestion
documents/s (load, split, embed, store; model loading excluded on both sides), hybrid query
latency p50/p95 at k=10. The last line is one JSON object.

Where the ingest ratio is bounded: ``ingest_ratio_embedding_only`` is the ratio were plait's
ingestion nothing but its embedding calls (loading, splitting, BM25 and Chroma writes free);
``--ceiling`` adds ``ingest_ratio_ceiling_lc_inputs``, the ratio were it to embed only what
LangChain embeds (each document cut at 256 tokens, 1.4x fewer tokens on SciFact) and do nothing
else. Both are upper bounds on what ingestion work outside the model can buy.

Usage::

    python benchmarks/retrieval_scifact.py                     # full run (minutes on 2 cores)
    python benchmarks/retrieval_scifact.py --docs 500          # ingest speed only, first 500 documents
    python benchmarks/retrieval_scifact.py --no-baseline --fp32-check
    python benchmarks/retrieval_scifact.py --ceiling               # + the ingest ratio's ceiling on this CPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "scifact"


def load_beir(folder: Path) -> tuple[list[dict], dict[str, str], dict[str, dict[str, int]]]:
    corpus = [json.loads(line) for line in open(folder / "corpus.jsonl", encoding="utf-8") if line.strip()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, open(folder / "queries.jsonl", encoding="utf-8"))}
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / "test.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            if int(score) > 0:
                qrels.setdefault(qid, {})[did] = int(score)
    return corpus, queries, {q: r for q, r in qrels.items() if q in queries}


def ndcg_at(ranked: list[str], rel: dict[str, int], k: int = 10) -> float:
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(rel.values(), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], rel: dict[str, int], k: int = 100) -> float:
    return len(set(ranked[:k]) & set(rel)) / len(rel)


def evaluate(search, queries: dict[str, str], qrels: dict[str, dict[str, int]], top10=None) -> dict[str, float]:
    """``search(query) -> ranked corpus ids``; mean nDCG@10 and recall@100.

    ``top10``: a second search for nDCG@10 (a hybrid retriever's depth of fusion follows its k:
    nDCG@10 is measured at k=10, as a user asking for 10 gets it, recall@100 at k=200).
    """
    nd, rc = [], []
    for qid, rel in qrels.items():
        ranked = search(queries[qid])
        nd.append(ndcg_at(top10(queries[qid]) if top10 else ranked, rel))
        rc.append(recall_at(ranked, rel))
    return {"ndcg10": round(statistics.fmean(nd), 4), "recall100": round(statistics.fmean(rc), 4)}


def doc_ids(chunks, key: str = "record_id", k: int = 100) -> list[str]:
    """Corpus ids of retrieved chunks, best chunk per document, in order."""
    seen: dict[str, None] = {}
    for c in chunks:
        seen.setdefault(str(c.metadata[key]), None)
        if len(seen) == k:
            break
    return list(seen)


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def write_subset(corpus_file: Path, n: int | None, tmp: Path) -> tuple[Path, int]:
    if n is None:
        return corpus_file, sum(1 for line in open(corpus_file, encoding="utf-8") if line.strip())
    out = tmp / "corpus.jsonl"
    with open(corpus_file, encoding="utf-8") as src, open(out, "w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i >= n:
                break
            dst.write(line)
    return out, min(n, i + 1)


def run_plait(corpus_file: Path, n_docs: int, tmp: Path, dtype: str) -> tuple[object, dict]:
    from plait.local_models.embeddings.sentence_transformer import SentenceTransformerEmbeddings
    from plait.retrievers.chroma import ChromaStore
    from plait.retrievers.indexing import Indexer
    from plait.retrievers.loaders import JSONLLoader

    emb = SentenceTransformerEmbeddings(dtype=dtype)
    emb.embed_query("warm up")  # model loading is not ingestion
    store = ChromaStore(f"scifact-{dtype}", path=tmp / f"plait-{dtype}", embeddings=emb)
    indexer = Indexer(store, loaders={".jsonl": JSONLLoader(("title", "text"), id_key="_id")}, progress=True)
    spent = [0.0]  # seconds inside the embedding model during ingestion
    embed_array = emb.embed_array

    def timed(texts):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return embed_array(texts)
        finally:
            spent[0] += time.perf_counter() - t

    emb.embed_array = timed  # type: ignore[method-assign]
    t0 = time.perf_counter()
    report = indexer.ingest(corpus_file)
    seconds = time.perf_counter() - t0
    emb.embed_array = embed_array  # type: ignore[method-assign]
    if report.skipped:
        raise SystemExit(f"ingestion skipped files: {report.summary()}")
    return store, {"seconds": seconds, "docs_per_s": n_docs / seconds, "chunks": store.count(),
                   "embed_seconds": spent[0], "dtype": emb.resolved["dtype"], "device": emb.resolved["device"]}


def embed_lc_inputs(corpus: list[dict], n_docs: int) -> float:
    """Seconds plait's embedder (default dtype) takes on exactly LangChain's inputs: one text per
    document, which the model truncates at its 256 tokens. The floor of any ingestion that embeds
    what LangChain embeds; plait's default embeds every chunk of every document instead."""
    from plait.local_models.embeddings.sentence_transformer import SentenceTransformerEmbeddings

    emb = SentenceTransformerEmbeddings()
    emb.embed_query("warm up")
    texts = [(d["title"] + "\n\n" + d["text"]).strip() for d in corpus[:n_docs]]
    t0 = time.perf_counter()
    emb.embed_array(texts)
    return time.perf_counter() - t0


def run_langchain(corpus: list[dict], n_docs: int, tmp: Path) -> tuple[object, list, dict]:
    from langchain_chroma import Chroma
    from langchain_core.documents import Document as LCDocument
    from langchain_huggingface import HuggingFaceEmbeddings

    from plait.defaults import embedding_model_path

    emb = HuggingFaceEmbeddings(model_name=embedding_model_path())
    emb.embed_query("warm up")
    t0 = time.perf_counter()
    docs = [LCDocument(page_content=(d["title"] + "\n\n" + d["text"]).strip(), metadata={"id": d["_id"]})
            for d in corpus[:n_docs]]
    store = Chroma.from_documents(docs, emb, collection_name="lc-scifact", persist_directory=str(tmp / "lc"))
    seconds = time.perf_counter() - t0
    return store, docs, {"seconds": seconds, "docs_per_s": n_docs / seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR folder (corpus.jsonl, queries.jsonl, "
                                                                      "qrels/test.tsv); default %(default)s")
    ap.add_argument("--docs", type=int, default=None, help="ingest-speed run on the first N documents (no quality)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the LangChain baseline")
    ap.add_argument("--fp32-check", action="store_true", help="also run plait dense with float32 embeddings")
    ap.add_argument("--dtype", default="auto", help="plait embedding dtype (default: auto)")
    ap.add_argument("--ceiling", action="store_true",
                    help="also time plait's embedder on LangChain's exact inputs (documents truncated at 256 "
                         "tokens): the ingest ratio an ingestion that only embedded those could reach")
    args = ap.parse_args()
    if not (args.data / "corpus.jsonl").exists():
        raise SystemExit(f"No BEIR data at {args.data}: pass --data DIR holding corpus.jsonl, queries.jsonl, qrels/")

    corpus, queries, qrels = load_beir(args.data)
    quality = args.docs is None
    out: dict[str, object] = {"dataset": args.data.name, "queries": len(qrels) if quality else 0}
    with tempfile.TemporaryDirectory(prefix="plait-bench-") as tmpdir:
        tmp = Path(tmpdir)
        corpus_file, n_docs = write_subset(args.data / "corpus.jsonl", args.docs, tmp)
        out["docs"] = n_docs

        # --- plait: ingest -------------------------------------------------------------------------
        store, ing = run_plait(corpus_file, n_docs, tmp, args.dtype)
        out.update(ingest_docs_per_s=round(ing["docs_per_s"], 1), ingest_seconds=round(ing["seconds"], 1),
                   ingest_embed_seconds=round(ing["embed_seconds"], 1), chunks=ing["chunks"], dtype=ing["dtype"],
                   device=ing["device"])
        print(f"plait ingest: {n_docs} docs -> {ing['chunks']} chunks in {ing['seconds']:.1f}s "
              f"({ing['docs_per_s']:.1f} docs/s, {ing['dtype']} on {ing['device']}; "
              f"{ing['embed_seconds']:.1f}s of it embedding)", flush=True)

        # --- plait: quality and latency ------------------------------------------------------------
        keys = ["dense_ndcg10", "dense_recall100", "bm25_ndcg10", "bm25_recall100", "hybrid_ndcg10",
                "hybrid_recall100", "hybrid_rrf_ndcg10", "hybrid_rrf_recall100", "hybrid_dbsf_ndcg10",
                "hybrid_dbsf_recall100", "hybrid_bychunk_ndcg10", "hybrid_bychunk_recall100", "query_p50_ms",
                "query_p95_ms"]
        out.update(dict.fromkeys(keys))
        if quality:
            for name, kind, options in [("dense", "dense", {}), ("bm25", "bm25", {}), ("hybrid", "hybrid", {}),
                                        ("hybrid_rrf", "hybrid", {"fusion": "rrf"}),
                                        ("hybrid_dbsf", "hybrid", {"normalisation": "dbsf"}),
                                        ("hybrid_bychunk", "hybrid", {"by_document": False})]:
                deep, top = (store.as_retriever(kind, k=n, **options) for n in (200, 10))
                m = evaluate(lambda q, r=deep: doc_ids(r.invoke(q)), queries, qrels,
                             top10=(lambda q, r=top: doc_ids(r.invoke(q))) if kind == "hybrid" else None)
                out[f"{name}_ndcg10"], out[f"{name}_recall100"] = m["ndcg10"], m["recall100"]
                print(f"plait {name}: nDCG@10 {m['ndcg10']:.4f}  recall@100 {m['recall100']:.4f}", flush=True)
            default = store.as_retriever(k=10)
            times = []
            for qid in qrels:
                t = time.perf_counter()
                default.invoke(queries[qid])
                times.append((time.perf_counter() - t) * 1000)
            out["query_p50_ms"] = round(percentile(times, 50), 1)
            out["query_p95_ms"] = round(percentile(times, 95), 1)
            print(f"plait hybrid k=10 latency: p50 {out['query_p50_ms']} ms, p95 {out['query_p95_ms']} ms", flush=True)

        out["dense_fp32_ndcg10"] = None
        if args.fp32_check and quality:
            store32, _ = run_plait(corpus_file, n_docs, tmp, "float32")
            r = store32.as_retriever("dense", k=200)
            out["dense_fp32_ndcg10"] = evaluate(lambda q: doc_ids(r.invoke(q)), queries, qrels)["ndcg10"]
            print(f"plait dense float32: nDCG@10 {out['dense_fp32_ndcg10']:.4f}", flush=True)

        # --- LangChain baseline --------------------------------------------------------------------
        for key in ("lc_ingest_docs_per_s", "ingest_ratio", "ingest_ratio_embedding_only", "lc_inputs_embed_docs_per_s",
                    "ingest_ratio_ceiling_lc_inputs", "lc_dense_ndcg10", "lc_dense_recall100", "lc_bm25_ndcg10",
                    "lc_bm25_recall100", "lc_query_p50_ms"):
            out[key] = None
        if not args.no_baseline:
            lc_store, lc_docs, lc = run_langchain(corpus, n_docs, tmp)
            out["lc_ingest_docs_per_s"] = round(lc["docs_per_s"], 1)
            out["ingest_ratio"] = round(ing["docs_per_s"] / lc["docs_per_s"], 2)
            # were plait's ingestion nothing but its embedding calls
            out["ingest_ratio_embedding_only"] = round(n_docs / ing["embed_seconds"] / lc["docs_per_s"], 2)
            print(f"langchain ingest: {lc['docs_per_s']:.1f} docs/s", flush=True)
            if args.ceiling:
                rate = n_docs / embed_lc_inputs(corpus, n_docs)
                out["lc_inputs_embed_docs_per_s"] = round(rate, 1)
                out["ingest_ratio_ceiling_lc_inputs"] = round(rate / lc["docs_per_s"], 2)
                print(f"plait embedder on LangChain's inputs: {rate:.1f} docs/s "
                      f"({out['ingest_ratio_ceiling_lc_inputs']}x LangChain's ingest)", flush=True)
            if quality:
                from langchain_community.retrievers import BM25Retriever as LCBM25

                times = []

                def lc_dense(q: str) -> list[str]:
                    t = time.perf_counter()
                    hits = lc_store.similarity_search(q, k=100)  # type: ignore[attr-defined]
                    times.append((time.perf_counter() - t) * 1000)
                    return [h.metadata["id"] for h in hits]

                m = evaluate(lc_dense, queries, qrels)
                out["lc_dense_ndcg10"], out["lc_dense_recall100"] = m["ndcg10"], m["recall100"]
                out["lc_query_p50_ms"] = round(percentile(times, 50), 1)
                bm25 = LCBM25.from_documents(lc_docs, k=100)
                m = evaluate(lambda q: [h.metadata["id"] for h in bm25.invoke(q)], queries, qrels)
                out["lc_bm25_ndcg10"], out["lc_bm25_recall100"] = m["ndcg10"], m["recall100"]
                print(f"langchain dense: nDCG@10 {out['lc_dense_ndcg10']}  BM25: {out['lc_bm25_ndcg10']}", flush=True)

    print()
    print(f"{'':24}{'plait':>12}{'langchain':>12}")
    rows = [("dense nDCG@10", "dense_ndcg10", "lc_dense_ndcg10"),
            ("dense recall@100", "dense_recall100", "lc_dense_recall100"),
            ("BM25 nDCG@10", "bm25_ndcg10", "lc_bm25_ndcg10"),
            ("BM25 recall@100", "bm25_recall100", "lc_bm25_recall100"),
            ("hybrid nDCG@10", "hybrid_ndcg10", None), ("hybrid recall@100", "hybrid_recall100", None),
            ("hybrid RRF nDCG@10", "hybrid_rrf_ndcg10", None),
            ("hybrid DBSF nDCG@10", "hybrid_dbsf_ndcg10", None),
            ("hybrid by chunk nDCG@10", "hybrid_bychunk_ndcg10", None),
            ("ingest docs/s", "ingest_docs_per_s", "lc_ingest_docs_per_s"),
            ("query p50 ms", "query_p50_ms", "lc_query_p50_ms"), ("query p95 ms", "query_p95_ms", None)]
    for label, a, b in rows:
        va, vb = out.get(a), out.get(b) if b else None
        print(f"{label:24}{'-' if va is None else va:>12}{'-' if vb is None else vb:>12}")
    print(f"ingest ratio (plait / langchain): {out['ingest_ratio']}; were ingestion only its embedding calls: "
          f"{out['ingest_ratio_embedding_only']}; embedding only LangChain's inputs, nothing else: "
          f"{out['ingest_ratio_ceiling_lc_inputs']}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
