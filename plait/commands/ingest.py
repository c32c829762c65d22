"""``plait ingest PATH...``: index files and folders into a collection of the embedded store.

Incremental: unchanged files are skipped, changed files re-chunked, and with ``--delete-missing``
files that disappeared are removed. Files that cannot be read are skipped and listed at the end;
when no file could be indexed at all (every one skipped, or none found) the exit code is 1.
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
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (they are drawn only when stderr is a terminal anyway)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict
    from pathlib import Path

    from plait.commands._checks import CLIError, UsageError, open_store
    from plait.retrievers.indexing import ingest

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}; check the path")
    store = open_store(args.collection, args.store)
    report = ingest(args.paths, store=store, glob=args.glob or "**/*", exclude=args.exclude,
                    delete_missing=args.delete_missing, progress=not args.no_progress and sys.stderr.isatty())
    if args.json:
        print(json.dumps({**asdict(report), "collection": args.collection, "chunks": store.count()}, indent=2))
    else:
        print(report.summary())
        print(f"collection {args.collection!r} now holds {store.count()} chunks")
    if report.files_seen == 0 and report.files_deleted == 0:
        raise CLIError(f"no files to index under {', '.join(args.paths)}"
                       + (f" matching {', '.join(args.glob)}" if args.glob else "") + "; check the paths and --glob")
    if report.files_added + report.files_updated + report.files_unchanged == 0:
        raise CLIError(f"every file was skipped ({len(report.skipped)}; reasons above), so nothing was indexed")
    return 0
