"""``plait search QUERY --collection C``: the passages retrieval finds, with scores; no chat model.

What ``plait ask`` would show the model, without asking it: useful to check an index, tune ``-k``
or see why an answer went wrong. ``--kind`` picks the retriever: ``hybrid`` (default, dense +
BM25 fused, as ``ask`` uses), ``dense`` (cosine similarity), ``bm25`` (keyword score) or ``mmr``.
"""

from __future__ import annotations

import argparse
import json

from plait.commands._common import add_store_options


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", nargs="+", help="what to look for (quotes optional)")
    add_store_options(parser)
    parser.add_argument("-k", type=int, default=5, help="how many passages (default: 5)")
    parser.add_argument("--kind", default="hybrid", choices=["hybrid", "dense", "bm25", "mmr"],
                        help="retriever: hybrid (default), dense, bm25 or mmr")
    parser.add_argument("--chars", type=int, default=240, help="characters of each passage to show (default: 240)")
    parser.add_argument("--json", action="store_true", help="print the passages as JSON (whole texts)")


def run(args: argparse.Namespace) -> int:
    from plait.chains.citations import Source
    from plait.commands._checks import UsageError, require_collection, require_text

    query = require_text(" ".join(args.query), "query", 'plait search "install from a wheel" --collection docs')
    if args.k < 1:
        raise UsageError(f"-k must be 1 or more, not {args.k}")
    store = require_collection(args)
    docs = store.as_retriever(args.kind, k=args.k).invoke(query)
    if args.json:
        print(json.dumps([{"rank": i, "score": d.score, "source": d.metadata.get("source"), "id": d.id,
                           "metadata": d.metadata, "content": d.content} for i, d in enumerate(docs, 1)], indent=2))
        return 0
    if not docs:
        print(f"no passages in {args.collection!r} match {query!r}")
        return 0
    for i, d in enumerate(docs, 1):
        score = f"{d.score:.3f}" if d.score is not None else "-"
        text = " ".join(d.content.split())
        text = text if len(text) <= args.chars else text[:args.chars - 3] + "..."
        print(f"{Source.from_document(i, d).label(relative=True)}  {score}\n    {text}")
    return 0
