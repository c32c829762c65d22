"""What a filtered vector query costs each way, on a store written by ``retrieval_scale.py --keep DIR``.

Measures, on the kept store (SciFact claims as queries, fake or real embeddings as it was written):

- ``plain_ms``: Chroma's nearest ``n`` with no filter, for several ``n`` (the over-fetch's cost);
  ``neighbour_cost_ms``: the slope, ms per neighbour asked for;
- ``ids_ms``: the nearest 200 restricted to ``P`` passing ids, for several ``P`` (the id query's
  cost); ``id_cost_ms``: the slope, ms per id;
- for filters passing 1%, 10%, 20% and 50% of the chunks: the ids query, the over-fetch and what
  the store's plan (:mod:`plait.retrievers.chroma_search`) chooses, with how many of the ids
  query's 200 the over-fetch returns too (``overlap``) and each way's recall of the exact 200
  nearest passing chunks (brute force over their stored vectors: ``recall_ids``, ``recall_overfetch``);
- ``passing_ms``: reading a filter's passing ids from the lexical index, uncached, split into
  its two aggregations.

The constants of :class:`plait.retrievers.chroma_search.FilterPlan` come from these slopes.
Wall clock on a shared machine: queries are interleaved and medians taken.

    nice python benchmarks/retrieval_scale.py --chunks 300000 --fake-embeddings --keep /tmp/s300k --bigfile-mb 0
    nice python benchmarks/filtered_dense.py /tmp/s300k
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return (time.perf_counter() - t) * 1000, out


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points."""
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def main() -> None:
    from retrieval_scale import SCIFACT, TOPICS, FakeEmbeddings, open_store
    from retrieval_scifact import load_beir

    from plait.retrievers.chroma_search import nearest

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", type=Path, help="the folder given to retrieval_scale.py --keep")
    ap.add_argument("--queries", type=int, default=15)
    ap.add_argument("--k", type=int, default=200, help="neighbours asked for (the hybrid's dense side: 200)")
    args = ap.parse_args()
    emb = FakeEmbeddings()
    store, _ = open_store(args.store, emb)
    _, queries, qrels = load_beir(SCIFACT)
    vecs = [emb.embed_query(queries[q]) for q in list(qrels)[:args.queries]]
    lexical = store.lexical_index(follow=False)
    total = store.count()
    out: dict[str, Any] = {"chunks": total, "k": args.k}
    col = store.collection
    col.query(query_embeddings=[vecs[0]], n_results=10, include=["distances"])  # loads the graph

    # the two aggregations of reading a filter's passing ids, uncached
    from plait.retrievers.lexical_engine import filter_query
    searcher = lexical._searcher()
    where = filter_query(lexical._idx, {"topic": TOPICS[3]})
    agg_sum, agg_terms, whole = [], [], []
    for _ in range(5):
        t, n = timed(lexical._sum_n, searcher, where)
        agg_sum.append(t)
        t, _ = timed(searcher.aggregate, where, {"c": {"terms": {"field": "chunk", "size": n}}})
        agg_terms.append(t)
        lexical._ids_cache.clear()
        t, _ = timed(lexical.passing, {"topic": TOPICS[3]})
        whole.append(t)
    out["passing_ms"] = {"sum_agg": round(statistics.median(agg_sum), 1),
                         "terms_agg": round(statistics.median(agg_terms), 1),
                         "passing": round(statistics.median(whole), 1)}
    print("passing ids:", out["passing_ms"], flush=True)

    # costs by size: plain queries by n, id queries by P (interleaved)
    ns = [args.k, 1000, 3000, 10000]
    ten = lexical.passing({"topic": TOPICS[3]})
    assert ten is not None
    pool = ten.ids + lexical.passing({"topic": {"$in": TOPICS[4:9]}}).ids  # type: ignore[union-attr]
    ps = [p for p in (300, 1000, 3000, 10000, 30000, 100000) if p <= len(pool)]
    pools = {p: pool[:p] for p in ps}
    plain: dict[int, list[float]] = {n: [] for n in ns}
    by_ids: dict[int, list[float]] = {p: [] for p in ps}
    for v in vecs:
        for n in ns:
            plain[n].append(timed(col.query, query_embeddings=[v], n_results=n, include=["distances"])[0])
        for p in ps:
            by_ids[p].append(timed(col.query, query_embeddings=[v], n_results=args.k, ids=pools[p],
                                   include=["distances"])[0])
    out["plain_ms"] = {n: round(statistics.median(t), 1) for n, t in plain.items()}
    out["ids_ms"] = {p: round(statistics.median(t), 1) for p, t in by_ids.items()}
    out["neighbour_cost_ms"] = round(slope([(n, statistics.median(t)) for n, t in plain.items()]), 5)
    out["id_cost_ms"] = round(slope([(p, statistics.median(t)) for p, t in by_ids.items()]), 5)
    print("plain:", out["plain_ms"], "ids:", out["ids_ms"], flush=True)

    # filters of several selectivities: each way, and the plan's choice
    docs = total // 2
    filters = {"1%": {"source": {"$in": [f"doc{d}.txt" for d in range(0, docs, 100)]}},
               "10%": {"topic": TOPICS[3]},
               "20%": {"topic": {"$in": TOPICS[3:5]}},
               "50%": {"topic": {"$in": TOPICS[3:8]}}}
    ways: dict[str, Any] = {}
    for name, f in filters.items():
        passing = lexical.passing(f)
        assert passing is not None
        m = max(args.k, min(total, round(store.filter_plan.safety * args.k * total / max(1, len(passing.ids)))))
        times: dict[str, list[float]] = {"ids": [], "overfetch": [], "plan": []}
        overlap, recall_ids, recall_over = [], [], []
        import numpy as np

        got = col.get(ids=passing.ids, include=["embeddings"])  # the exact answer, by brute force
        pids, pvecs = got["ids"], np.asarray(got["embeddings"], dtype=np.float32)
        pvecs /= np.linalg.norm(pvecs, axis=1, keepdims=True)
        for v in vecs:
            exact = {pids[i] for i in np.argsort(-(pvecs @ np.asarray(v, dtype=np.float32)))[:args.k]}
            t, a = timed(col.query, query_embeddings=[v], n_results=min(args.k, len(passing.ids)),
                         ids=passing.ids, include=["distances"])
            times["ids"].append(t)
            t, b = timed(col.query, query_embeddings=[v], n_results=m, include=["distances"])
            kept = [i for i in b["ids"][0] if i in passing.set][:args.k]
            times["overfetch"].append(t)
            overlap.append(len(set(kept) & set(a["ids"][0])) / max(1, len(a["ids"][0])))
            recall_ids.append(len(exact & set(a["ids"][0])) / len(exact))
            recall_over.append(len(exact & set(kept)) / len(exact))
            store.dense_plans.clear()
            t, _ = timed(nearest, store._read, v, args.k, f, passing, ["distances"], store.filter_plan,
                         store.dense_plans)
            times["plan"].append(t)
        ways[name] = {"passing": len(passing.ids), "overfetch_n": m,
                      **{w: round(statistics.median(t), 1) for w, t in times.items()},
                      "plan_took": dict(store.dense_plans), "overlap": round(statistics.fmean(overlap), 3),
                      "recall_ids": round(statistics.fmean(recall_ids), 3),
                      "recall_overfetch": round(statistics.fmean(recall_over), 3)}
        print(name, ways[name], flush=True)
    out["filters"] = ways
    out["load"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
