"""What a filtered vector query costs each way, on a store written by ``retrieval_scale.py --keep DIR``.

Measures, on the kept store (SciFact claims as queries, fake or real embeddings as it was written):

- ``plain_ms``: Chroma's nearest ``n`` with no filter, for several ``n`` (the over-fetch's cost);
  ``neighbour_cost_ms``: the slope, ms per neighbour asked for;
- ``ids_ms``: the nearest 200 restricted to ``P`` ids (a random sample), for several ``P`` (the
  id query's cost); ``scan_cost_ms``: their median over the collection's size, ms per chunk;
- for filters passing 1%, 10%, 20% and 50% of the chunks: the ids query, the over-fetch and what
  the store's plan (:mod:`plait.retrievers.chroma_search`) chooses, with how many of the ids
  query's 200 the over-fetch returns too (``overlap``) and each way's recall of the exact 200
  nearest passing chunks (brute force over their stored vectors: ``recall_ids``, ``recall_overfetch``);
- ``passing_ms``: reading a filter's passing ids from the lexical index, uncached, split into
  its two aggregations.

The constants of :class:`plait.retrievers.chroma_search.FilterPlan` come from ``neighbour_cost_ms``
and ``scan_cost_ms``.
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

    from plait.retrievers.base import to_chroma_where as store_where
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

    # a filter's passing chunks, uncached: their count, every id, or which of 3,000 candidates pass
    import random

    rng = random.Random(0)
    count_ms, ids_ms, members_ms = [], [], []
    for _ in range(5):
        lexical._ids_cache.clear()
        t, found = timed(lexical.passing, {"topic": TOPICS[3]})
        count_ms.append(t)
        members_ms.append(timed(found.members, [f"d{rng.randrange(total // 2)}-c0" for _ in range(3000)])[0])
        ids_ms.append(timed(found.ids)[0])
    out["passing_ms"] = {"count": round(statistics.median(count_ms), 1), "ids": round(statistics.median(ids_ms), 1),
                         "members_of_3000": round(statistics.median(members_ms), 1)}
    print("passing ids:", out["passing_ms"], flush=True)

    # costs by size: plain queries by n, id queries by P (interleaved)
    ns = [args.k, 1000, 3000, 10000]
    pool = [f"d{d}-c{c}" for d in range(total // 2 - 3) for c in (0, 1)]  # every one stored (5 "added-" aside)
    random.Random(1).shuffle(pool)
    ps = [p for p in (300, 1000, 3000, 10000, 30000, 60000) if p <= len(pool)]
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
    out["scan_cost_ms"] = round(statistics.median(statistics.median(t) for t in by_ids.values()) / total, 6)
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
        ids = passing.ids()
        m = store.filter_plan.neighbours(args.k, passing.count, total) or \
            min(total, round((args.k + 4 * args.k ** 0.5) * total / max(1, passing.count)))
        times: dict[str, list[float]] = {"ids": [], "overfetch": [], "plan": []}
        overlap, recall_ids, recall_over = [], [], []
        import numpy as np

        got = col.get(where=store_where(f), include=["embeddings"])  # the exact answer, by brute force
        pids, pvecs = got["ids"], np.asarray(got["embeddings"], dtype=np.float32)
        pvecs /= np.linalg.norm(pvecs, axis=1, keepdims=True)
        for v in vecs:
            passing = lexical.passing(f)  # as each query asks (the same until a commit)
            exact = {pids[i] for i in np.argsort(-(pvecs @ np.asarray(v, dtype=np.float32)))[:args.k]}
            if ids is not None:
                t, a = timed(col.query, query_embeddings=[v], n_results=min(args.k, len(ids)), ids=ids,
                             include=["distances"])
            else:  # more than tantivy lists at once: Chroma's where
                t, a = timed(col.query, query_embeddings=[v], n_results=args.k, where=store_where(f),
                             include=["distances"])
            times["ids"].append(t)
            t, b = timed(col.query, query_embeddings=[v], n_results=m, include=["distances"])
            members = passing.members(b["ids"][0])
            kept = [i for i in b["ids"][0] if i in members][:args.k]
            times["overfetch"].append(t)
            overlap.append(len(set(kept) & set(a["ids"][0])) / max(1, len(a["ids"][0])))
            recall_ids.append(len(exact & set(a["ids"][0])) / len(exact))
            recall_over.append(len(exact & set(kept)) / len(exact))
            store.dense_plans.clear()
            t, _ = timed(nearest, store._read, v, args.k, f, passing, ["distances"], store.filter_plan,
                         store.dense_plans)
            times["plan"].append(t)
        ways[name] = {"passing": passing.count, "ids_listed": ids is not None, "overfetch_n": m,
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
