"""Chroma's nearest chunks to a vector under a metadata filter: which of three queries answers it.

:meth:`ChromaStore._query <plait.retrievers.chroma.ChromaStore>` comes here. Three ways to ask
Chroma for the ``k`` nearest chunks that pass a filter, all giving the same chunks:

- **where**: Chroma's own ``where``. Used for a filter the lexical engine cannot answer exactly
  (a negation, a per-chunk key, a string range: :func:`~plait.retrievers.lexical_engine.exact`)
  and for a store without a :class:`~plait.retrievers.lexical.LexicalIndex`. Always right, slow
  at scale (448 ms at 300,000 chunks with 10% passing, docs/scaling.md).
- **ids**: the query restricted to the ids of every passing chunk (``ids=``), listed by the
  lexical index once per filter and commit (:meth:`Passing.ids
  <plait.retrievers.lexical_engine.Passing.ids>`). Chroma resolves those ids, then searches its
  graph skipping the chunks not allowed, so the fewer pass, the more of the graph it walks: at
  300,000 chunks (loaded machine, k=200) 60-107 ms for 3,000-60,000 ids, 222 ms for 300; at 5,000
  chunks 4-5 ms. Roughly ``scan_cost`` per chunk of the collection. Tantivy lists at most 65,000
  ids at once; past that (and when Chroma lacks one of them: a write of another process half
  seen) the ``where`` query answers.
- **overfetch**: the ``m`` nearest chunks with no filter (ids and distances only), of which the
  first ``k`` that pass are kept (:meth:`Passing.members <plait.retrievers.lexical_engine.Passing.members>`:
  one lexical query for the ``m`` candidates, or a set lookup once the filter's ids are listed).
  With a fraction ``s`` of the chunks passing, ``m = (k + z * sqrt(k)) / s``: when the query's
  neighbours pass as often as the collection does, the passing ones among ``m`` are binomial with
  mean ``k + z * sqrt(k)``, ``z`` (4) standard deviations or more above ``k`` (2,566 for k=200 at 10%). Its cost
  grows with ``m``: ``neighbour_cost`` each (at 300,000 chunks 41 ms for 3,000, 112 ms for 10,000).
  When fewer than ``k`` pass (the query's neighbourhood passes less often than the whole), the
  ids query answers instead, so the result is never shorter than the filter allows.

The choice (:class:`FilterPlan`): over-fetch when ``m * neighbour_cost < N * scan_cost`` for a
collection of ``N`` chunks, and ``m <= max_neighbours``. With the measured costs, over-fetching
pays when ``m`` is under ~3% of the collection: at 300,000 chunks and k=200 for filters passing
more than ~3.6% (10%: 37 ms against 83 ms by ids), at 1,000,000 for more than 2% (the cap), never
at 5,000. The costs come from ``benchmarks/filtered_dense.py`` (docs/scaling.md, "Filtered
queries"); only their ratio matters. Both ways are approximate (HNSW): on the benchmark's random
vectors the over-fetch's recall of the exact nearest passing chunks was at least the ids query's
at every selectivity; on a small store both are exact and equal (tests/retrievers/test_filtered_dense.py).

Which way each query went is counted in ``ChromaStore.dense_plans`` (a ``Counter``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plait.retrievers.base import Filter, to_chroma_where
from plait.retrievers.lexical import Passing


@dataclass
class FilterPlan:
    """When a filtered vector query over-fetches instead of asking by ids (see the module docstring).

    Args:
        scan_cost: what the id-restricted query costs per chunk of the collection (ms; measured).
        neighbour_cost: what the unfiltered query costs per neighbour asked for (ms; measured).
        z: how many standard deviations above ``k`` the expected passing neighbours are.
        max_neighbours: never over-fetch more than this many (112 ms for 10,000 at 300,000 chunks).
    """

    scan_cost: float = 0.0003
    neighbour_cost: float = 0.011
    z: float = 4.0
    max_neighbours: int = 15_000

    def neighbours(self, k: int, passing: int, total: int) -> int | None:
        """How many neighbours to over-fetch for ``k`` passing chunks, or None to ask by ids."""
        if passing <= 0 or total <= 0:
            return None
        m = min(total, math.ceil((k + self.z * math.sqrt(k)) * total / passing))
        if m > self.max_neighbours or m * self.neighbour_cost >= total * self.scan_cost:
            return None
        return m


def nearest(read: Callable[[Callable[[Any], Any]], Any], vector: Any, k: int, filter: Filter | None,
            passing: Passing | None, include: list[str], plan: FilterPlan, plans: Any) -> dict[str, Any]:
    """Chroma's ``k`` nearest chunks to ``vector`` passing ``filter``, as one query's result
    (``{"ids": [...], "distances": [...], ...}``; empty when nothing passes).

    Args:
        read: runs ``fn(collection)`` on the store's collection (``ChromaStore._read``).
        passing: the chunks passing ``filter`` from the lexical index, or None (then ``where``).
        include: what Chroma returns besides ids.
        plan: when to over-fetch; ``plans`` (a Counter) counts the way taken.
    """
    vec = [[float(x) for x in vector]]
    if passing is not None and not passing.count:
        plans["none"] += 1
        return {}
    m = plan.neighbours(k, passing.count, passing.total) if passing is not None else None
    if passing is not None and m is not None:
        res = _first(read(lambda c: c.query(query_embeddings=vec, include=["distances"], n_results=m)))
        got = res.get("ids", [])
        members = passing.members(got)
        keep = [j for j, i in enumerate(got) if i in members][:k]
        if len(keep) >= min(k, passing.count) or len(got) < m:  # enough, or every chunk was seen
            plans["overfetch"] += 1
            return _complete(read, res, keep, include)
        plans["overfetch-short"] += 1  # too few passed among the neighbours: ask by ids
    ids = passing.ids() if passing is not None else None
    if ids is None:  # a filter the engine cannot answer exactly, or too many ids to list
        plans["where" if filter else "plain"] += 1
        return _first(read(lambda c: c.query(query_embeddings=vec, include=include, n_results=k,
                                             where=to_chroma_where(filter))))
    try:
        res = _first(read(lambda c: c.query(query_embeddings=vec, include=include, ids=ids,
                                            n_results=min(k, len(ids)))))
    except Exception as e:  # chromadb's InternalError "Error finding id": Chroma lacks one of them
        if "finding id" not in str(e):
            raise
        plans["where-missing-id"] += 1
        return _first(read(lambda c: c.query(query_embeddings=vec, include=include, n_results=k,
                                             where=to_chroma_where(filter))))
    plans["ids"] += 1
    return res


def _first(res: dict[str, Any]) -> dict[str, Any]:
    """The first (only) query's part of a Chroma query result."""
    return {key: value[0] for key, value in res.items() if isinstance(value, list) and value}


def _complete(read: Callable[[Callable[[Any], Any]], Any], res: dict[str, Any], keep: list[int],
              include: list[str]) -> dict[str, Any]:
    """The kept rows of an over-fetched result, with what ``include`` asks for besides distances."""
    ids = [res["ids"][j] for j in keep]
    out: dict[str, Any] = {"ids": ids, "distances": [res["distances"][j] for j in keep]}
    rest = [x for x in include if x != "distances"]
    if rest and ids:
        got = read(lambda c: c.get(ids=ids, include=rest))
        where = {i: n for n, i in enumerate(got["ids"])}
        rows = [where[i] for i in ids if i in where]
        if len(rows) < len(ids):  # deleted between the two reads: leave those out
            present = [n for n, i in enumerate(ids) if i in where]
            out = {"ids": [ids[n] for n in present], "distances": [out["distances"][n] for n in present]}
        for key in rest:
            values = got[key]
            if key == "embeddings":
                import numpy as np

                out[key] = np.asarray(values)[rows]
            else:
                out[key] = [values[r] for r in rows]
    return out
