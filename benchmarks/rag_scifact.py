"""End-to-end RAG on BEIR SciFact: does the answer cite an abstract that really supports the claim?

For each claim (the first ``--limit`` of the test split), the default RAG chain runs: hybrid
retrieval (dense MiniLM + BM25) over the 5,183 abstracts, the top ``k`` numbered in the prompt,
the default local model (SmolLM2-135M-Instruct) answering with citations. Reported:

- citation recall: share of claims where at least one cited abstract is a gold (qrels) abstract;
- citation precision: share of all citations that point at a gold abstract;
- how the citations came about: written by the model (``[n]``) or inferred by word overlap
  (the chain's fallback when the model writes no marker, see :mod:`plait.chains.rag`);
- retrieval recall@k (a gold abstract among the passages shown), the ceiling for citation recall;
- a baseline from the same retrieval: always cite passage [1] (what a citation is worth without
  the model);
- answer latency p50/p90 (retrieval + generation) and generation tokens/s (completion tokens over
  the time from the model call to the last token, prompt processing included).

The index (one chunk per abstract: title + text) is built once in ``--index-dir`` and reused.
Data: ``--data`` (default ``../shared/data/scifact`` from the repository root); never copied.

Run: python benchmarks/rag_scifact.py --limit 30
The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_scifact(folder: Path) -> tuple[dict[str, dict[str, str]], list[dict[str, str]], dict[str, set[str]]]:
    if not (folder / "corpus.jsonl").exists():
        raise SystemExit(f"No SciFact data at {folder} (expected corpus.jsonl, queries.jsonl, qrels/test.tsv); "
                         "pass --data DIR")
    corpus = {}
    with open(folder / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            corpus[str(row["_id"])] = row
    qrels: dict[str, set[str]] = {}
    with open(folder / "qrels" / "test.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            if int(score) > 0:
                qrels.setdefault(qid, set()).add(did)
    queries = []
    with open(folder / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries.append({"id": str(row["_id"]), "text": row["text"]})
    return corpus, queries, qrels


def build_index(store, corpus: dict[str, dict[str, str]], batch: int = 256) -> float:
    """Embed and store every abstract once (skipped when the collection is already complete)."""
    from plait.messages import Document

    if store.count() == len(corpus):
        return 0.0
    t0 = time.perf_counter()
    done = set(store.ids())
    todo = [d for d in corpus.values() if d["_id"] not in done]
    for i in range(0, len(todo), batch):
        docs = []
        for row in todo[i:i + batch]:
            text = f"{row['title']}. {row['text']}".strip()
            docs.append(Document(content=text, id=row["_id"],
                                 metadata={"source": f"scifact:{row['_id']}", "start": 0, "end": len(text)}))
        store.upsert(docs)
        print(f"  indexed {min(i + batch, len(todo))}/{len(todo)} abstracts", file=sys.stderr, flush=True)
    return time.perf_counter() - t0


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    pos = (len(values) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--limit", type=int, default=30, help="first N claims (0: all 300)")
    parser.add_argument("--k", type=int, default=3, help="passages shown to the model")
    parser.add_argument("--retriever", default="hybrid", choices=["hybrid", "dense", "bm25"])
    parser.add_argument("--model", default="local", help="chat model spec (default: the bundled SmolLM2)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--index-dir", default=None, help="where the SciFact index lives (default: <data dir>/bench)")
    args = parser.parse_args()

    from plait.chains.rag import RAGChain
    from plait.defaults import data_dir
    from plait.models import chat_model_from_spec
    from plait.retrievers.chroma import ChromaStore

    corpus, queries, qrels = load_scifact(Path(args.data))
    if args.limit:
        queries = queries[: args.limit]
    index_dir = Path(args.index_dir) if args.index_dir else data_dir() / "bench" / "scifact-index"
    store = ChromaStore("scifact", path=index_dir)
    print(f"SciFact: {len(corpus)} abstracts, {len(queries)} claims; index at {index_dir}", file=sys.stderr)
    index_s = build_index(store, corpus)

    model = chat_model_from_spec(args.model)
    t_load = time.perf_counter()
    if hasattr(model, "load"):
        model.load()
    load_s = time.perf_counter() - t_load
    chain = RAGChain(store.as_retriever(args.retriever, k=args.k), model, k=args.k,
                     model_options={"max_tokens": args.max_tokens,
                                    **({"stop": ["\n\n"]} if args.model.startswith("local") else {})})

    latencies, gen_seconds, tokens = [], 0.0, 0
    hits = shown_hits = base_hits = base_right = 0
    cited_total = cited_right = 0
    methods = {"model": 0, "inferred": 0, "none": 0}
    rows = []
    for q in queries:
        gold = qrels[q["id"]]
        t0 = time.perf_counter()
        t_model = None
        total = None
        chunks = 0
        for chunk in chain.stream(q["text"]):
            if t_model is None:  # the first chunk (the sources) comes right before the model call
                t_model = time.perf_counter()
            elif chunk.answer:
                chunks += 1
            total = chunk if total is None else total + chunk
        end = time.perf_counter()
        assert total is not None and t_model is not None
        latencies.append(end - t0)
        gen_seconds += end - t_model
        tokens += total.usage.completion_tokens if total.usage else chunks
        ids = [s.id for s in total.citations]
        shown = [s.id for s in total.sources]
        methods[total.citation_method] += 1
        cited_total += len(ids)
        cited_right += sum(1 for i in ids if i in gold)
        hits += any(i in gold for i in ids)
        shown_hits += any(i in gold for i in shown)
        if shown:
            base_hits += shown[0] in gold
            base_right += shown[0] in gold
        rows.append((q["id"], len(ids), any(i in gold for i in ids), round(end - t0, 1), total.answer[:70]))

    n = len(queries)
    result = {
        "claims": n,
        "citation_recall": round(hits / n, 4),
        "citation_precision": round(cited_right / cited_total, 4) if cited_total else 0.0,
        "citations_by_model": methods["model"],
        "citations_inferred": methods["inferred"],
        "answers_without_citation": methods["none"],
        "retrieval_recall_at_k": round(shown_hits / n, 4),
        "baseline_cite_top1_recall": round(base_hits / n, 4),
        "baseline_cite_top1_precision": round(base_right / n, 4),
        "p50_s": round(statistics.median(latencies), 3),
        "p90_s": round(percentile(latencies, 0.9), 3),
        "tok_s": round(tokens / gen_seconds, 2) if gen_seconds else 0.0,
        "completion_tokens": tokens,
        "k": args.k,
        "retriever": args.retriever,
        "model": args.model,
        "index_build_s": round(index_s, 1),
        "model_load_s": round(load_s, 1),
    }
    print(f"{'claim':>8} {'cites':>5} {'gold?':>5} {'s':>6}  answer")
    for qid, nc, ok, s, ans in rows:
        print(f"{qid:>8} {nc:>5} {('yes' if ok else 'no'):>5} {s:>6}  {ans!r}")
    print()
    print(f"citation recall     {result['citation_recall']:.3f}   (cite-top-1 baseline "
          f"{result['baseline_cite_top1_recall']:.3f}; retrieval recall@{args.k} {result['retrieval_recall_at_k']:.3f})")
    print(f"citation precision  {result['citation_precision']:.3f}   (cite-top-1 baseline "
          f"{result['baseline_cite_top1_precision']:.3f})")
    print(f"citations: {methods['model']} answers cited by the model, {methods['inferred']} inferred, "
          f"{methods['none']} without")
    print(f"latency p50 {result['p50_s']:.2f}s  p90 {result['p90_s']:.2f}s   generation {result['tok_s']:.1f} tokens/s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
