"""``plait ingest PATH...``: index files and folders into a collection of the embedded store.

Incremental: unchanged files are skipped, changed files re-chunked, and with ``--delete-missing``
files that disappeared are removed. Files that cannot be read are skipped and listed at the end.
"""

from __future__ import annotations

import argparse
import sys

from plait.commands._common import add_store_options


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to index")
    add_store_options(parser)
    parser.add_argument("--glob", action="append", default=None,
                        help="which files under folders to take, e.g. '**/*.md' (repeatable; default: all)")
    parser.add_argument("--exclude", action="append", default=[], help="glob of files to leave out (repeatable)")
    parser.add_argument("--delete-missing", action="store_true",
                        help="remove the chunks of files that are gone from these folders")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from plait.commands._common import open_store
    from plait.retrievers.indexing import ingest

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        print(f"plait ingest: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    store = open_store(args)
    report = ingest(args.paths, store=store, glob=args.glob or "**/*", exclude=args.exclude,
                    delete_missing=args.delete_missing, progress=not args.no_progress)
    print(report.summary())
    print(f"collection {args.collection!r} now holds {store.count()} chunks")
    return 0
