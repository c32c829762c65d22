"""``plait collections``: the collections of the embedded store, with their chunks and files.

    plait collections                 # name, chunks, files, and the first few files
    plait collections --json          # [{"name", "chunks", "files", "sources"}, ...]
"""

from __future__ import annotations

import argparse
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=None,
                        help="folder of the embedded store (default: $PLAIT_HOME/chroma, else ~/.local/share/plait/chroma)")
    parser.add_argument("--json", action="store_true", help="print the list as JSON, with every source file")


def indexed_sources(store: Any) -> dict[str, int]:
    """The files ingested into ``store``'s collection and their chunk counts (from the ingest record)."""
    from pathlib import Path

    from plait.retrievers.indexing import IndexRecord

    if store.sidecar is None or not Path(store.sidecar).exists():
        return {}
    record = IndexRecord(store.sidecar)
    try:
        return {source: len(record.get(source)[1]) for source in record.sources()}
    finally:
        record.close()


def describe(store_path: str | None) -> list[dict[str, Any]]:
    from plait.commands._checks import collection_counts, open_store

    counts = collection_counts(open_store("default", store_path))
    rows = []
    for name, chunks in counts.items():
        sources = indexed_sources(open_store(name, store_path))
        rows.append({"name": name, "chunks": chunks, "files": len(sources), "sources": sorted(sources)})
    return rows


def run(args: argparse.Namespace) -> int:
    import json

    from plait.commands._common import short_source

    rows = describe(args.store)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no collections yet; create one with `plait ingest PATH --collection NAME`")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        shown = ", ".join(short_source(s) for s in r["sources"][:3])
        more = f", ... ({r['files'] - 3} more)" if r["files"] > 3 else ""
        files = f"{r['files']} files" if r["sources"] else "files not recorded"
        print(f"{r['name']:<{width}}  {r['chunks']:>6} chunks  {files}" + (f": {shown}{more}" if shown else ""))
    return 0
