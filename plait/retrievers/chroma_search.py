"""Chroma's nearest chunks to a vector under a metadata filter: which of three queries answers it.

:meth:`ChromaStore._query <plait.retrievers.chroma.ChromaStore>` comes here. Three ways to ask
Chroma for the ``k`` nearest chunks that pass a filter, all giving the same chunks:

- **where**: Chroma's own ``where``. Used for a filter the lexical engine cannot answer exactly
  (a negation, a per-chunk key, a string range: :func:`~plait.retrievers.lexical_engine.exact`)
  and for a store without a :class:`~plait.retrievers.lexical.LexicalIndex`. Always right, slow
  at scale (448 ms at 300,000 chunks with 10% passing, docs/scaling.md).
- **ids**: the query restricted to the ids of every passing chunk (``ids=``), which the lexical
  index reads once per filter and commit (:meth:`LexicalIndex.passing
  <plait.retrievers.lexical.LexicalIndex.passing>`). Chroma resolves each of those ids on every
  query, so its cost grows with the passing chunks: ~3 µs an id on top of the plain query.
- **overfetch**: the ``m`` nearest chunks with no filter (ids and distances only), of which the
  first ``k`` whose id passes are kept (a set lookup each). With a fraction ``s`` of the chunks
  passing, ``m = safety * k / s`` gives about ``safety * k`` passing chunks when the neighbours of
  the query pass as often as the collection does; its cost grows with ``m``: ~25 µs a neighbour.
  When fewer than ``k`` pass (the query's neighbourhood passes less often than the whole), the
  ids query answers instead, so the result is never shorter than the filter allows.

The choice (:class:`FilterPlan`): overfetch when its predicted cost, ``m * neighbour_cost``, is
below the ids query's, ``passing * id_cost``, and ``m`` is at most ``max_neighbours``. With ``N``
chunks, ``P`` passing and ``m = safety * k * N / P``, that is ``P * P > safety * k * N *
neighbour_cost / id_cost``: a filter passing many chunks of a big collection over-fetches; one
passing few, or any filter on a small collection, asks by ids. The costs are measured ones
(``benchmarks/filtered_dense.py``, docs/scaling.md, "Filtered queries"); only their ratio matters.

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
    """When a filtered dense query over-fetches instead of asking by ids (see the module docstring).

    Args:
        id_cost: what Chroma's query costs per id it is restricted to (ms; measured).
        neighbour_cost: what it costs per neighbour asked for (ms; measured).
        safety: how many more neighbours than ``k / selectivity`` to ask for.
        max_neighbours: never over-fetch more than this many.
    """

    id_cost: float = 0.003
    neighbour_cost: float = 0.025
    safety: float = 1.5
    max_neighbours: int = 20_000

    def neighbours(self, k: int, passing: int, total: int) -> int | None:
        """How many neighbours to over-fetch for ``k`` passing chunks, or None to ask by ids."""
        if passing <= 0 or total <= 0:
            return None
        m = min(total, math.ceil(self.safety * k * total / passing))
        if m > self.max_neighbours or m * self.neighbour_cost >= passing * self.id_cost:
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
    if passing is None:
        plans["where" if filter else "plain"] += 1
        return _first(read(lambda c: c.query(query_embeddings=vec, include=include, n_results=k,
                                             where=to_chroma_where(filter))))
    if not passing.ids:
        plans["none"] += 1
        return {}
    m = plan.neighbours(k, len(passing.ids), passing.total)
    if m is not None:
        res = _first(read(lambda c: c.query(query_embeddings=vec, include=["distances"], n_results=m)))
        got = res.get("ids", [])
        keep = [j for j, i in enumerate(got) if i in passing.set][:k]
        if len(keep) >= min(k, len(passing.ids)) or len(got) < m:  # enough, or every chunk was seen
            plans["overfetch"] += 1
            return _complete(read, res, keep, include)
        plans["overfetch-short"] += 1  # too few passed among the neighbours: ask by ids
    plans["ids"] += 1
    return _first(read(lambda c: c.query(query_embeddings=vec, include=include, ids=passing.ids,
                                         n_results=min(k, len(passing.ids)))))


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
