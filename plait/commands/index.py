"""``plait index show | remove | drop | rebuild``: what a collection holds, taking things out of it,
rebuilding its lexical index.

    plait index show docs                      # every ingested file with its chunk count
    plait index remove docs notes/old.md old/  # the chunks of these files (a folder: every file under it)
    plait index drop docs                      # the whole collection, with its BM25 twin and ingest record
    plait index rebuild docs                   # refill the lexical (BM25) index from the Chroma collection

``plait ingest`` adds files; these undo it. Nothing here loads a model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="list the files of a collection, with their chunk counts")
    remove = sub.add_parser("remove", help="remove files (or every file under a folder) from a collection")
    drop = sub.add_parser("drop", help="delete a collection entirely")
    rebuild = sub.add_parser("rebuild", help="rebuild the collection's lexical (BM25) index from its Chroma "
                                             "collection (never needed after ordinary writes)")
    for p in (show, remove, drop, rebuild):
        p.add_argument("collection", metavar="COLLECTION")
        p.add_argument("--store", default=None, help="folder of the embedded store (default: the data dir's)")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
    remove.add_argument("paths", nargs="+", metavar="PATH", help="files or folders as they were ingested")
    drop.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def _sources(store: Any) -> dict[str, int]:
    """Source file -> chunks: from the ingest record, else from the chunks' ``source`` metadata."""
    from plait.commands.collections import indexed_sources

    found = indexed_sources(store)
    if found or store.count() == 0:
        return found
    counts: dict[str, int] = {}
    for doc in store.get():  # chunks written through the API, not by plait ingest
        source = str(doc.metadata.get("source", "(no source)"))
        counts[source] = counts.get(source, 0) + 1
    return dict(sorted(counts.items()))


def _show(args: argparse.Namespace, store: Any) -> int:
    from plait.commands._common import short_source

    sources = _sources(store)
    if args.json:
        print(json.dumps({"collection": args.collection, "chunks": store.count(),
                          "sources": [{"source": s, "chunks": n} for s, n in sources.items()]}, indent=2))
        return 0
    print(f"{args.collection}: {store.count()} chunks from {len(sources)} files")
    for source, n in sources.items():
        print(f"  {n:>6}  {short_source(source)}")
    return 0


def _remove(args: argparse.Namespace, store: Any) -> int:
    from plait.commands._checks import CLIError
    from plait.retrievers.indexing import Indexer

    indexer = Indexer(store, progress=False)
    sources = indexer.record.sources()
    matched: list[str] = []
    missing = []
    for path in args.paths:
        root = Path(path).expanduser().resolve()
        here = [s for s in sources if Path(s) == root or root in Path(s).parents]
        if not here:
            missing.append(path)
        matched += [s for s in here if s not in matched]
    if missing:
        raise CLIError(f"not in {args.collection!r}: {', '.join(missing)}; `plait index show {args.collection}` "
                       "lists its files")
    chunks = indexer.remove(matched)
    if args.json:
        print(json.dumps({"collection": args.collection, "removed_files": matched, "removed_chunks": chunks,
                          "chunks": store.count()}, indent=2))
    else:
        print(f"removed {len(matched)} files ({chunks} chunks) from {args.collection!r}; "
              f"it now holds {store.count()} chunks")
    return 0


def _drop(args: argparse.Namespace, store: Any) -> int:
    from plait.commands._checks import CLIError
    from plait.retrievers.indexing import Indexer

    if not args.yes and sys.stdin.isatty():
        answer = input(f"delete the collection {args.collection!r} ({store.count()} chunks)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise CLIError("nothing deleted")
    chunks = store.count()
    store.clear()
    record = Indexer(store, progress=False).record
    record.forget(record.sources())  # so a later ingest indexes the files again
    record.close()
    if args.json:
        print(json.dumps({"collection": args.collection, "dropped_chunks": chunks}, indent=2))
    else:
        print(f"dropped {args.collection!r} ({chunks} chunks)")
    return 0


def _rebuild(args: argparse.Namespace, store: Any) -> int:
    import time

    start = time.perf_counter()
    chunks = store.rebuild_lexical()
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({"collection": args.collection, "lexical_chunks": chunks, "chunks": store.count(),
                          "seconds": round(seconds, 2)}, indent=2))
    else:
        print(f"rebuilt the lexical index of {args.collection!r}: {chunks} chunks in {seconds:.1f} s")
    return 0


def run(args: argparse.Namespace) -> int:
    from plait.commands._checks import require_collection

    store = require_collection(args, allow_empty=True)
    return {"show": _show, "remove": _remove, "drop": _drop, "rebuild": _rebuild}[args.action](args, store)
