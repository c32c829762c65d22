"""``plait ingest PATH...``: index files and folders into a collection of the embedded store.

Incremental: unchanged files are skipped, changed files re-chunked, a big file is committed in
batches and a killed run resumes from its last committed batch. Files that cannot be read (and
unreadable folders, broken links, FIFOs, links outside the paths unless ``--follow-links``) are
skipped and listed at the end; a bad line of a JSON Lines file is listed and the rest indexed.
When no file could be indexed at all (every one skipped, or none found) the exit code is 1.

Removing: ``--delete-missing`` removes the chunks of files under the paths given that no longer
exist (a path that is gone, such as a renamed folder, is allowed then); ``--prune-missing`` does it
for every file of the collection, and needs no path.

One ingest per collection at a time: a second one waits ("waiting for another ingest of
collection X (pid N)"), or with ``--no-wait`` fails at once.
"""

from __future__ import annotations

import argparse
import sys

from plait.commands._common import add_store_options


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH", help="files or folders to index")
    add_store_options(parser)
    parser.add_argument("--glob", action="append", default=None,
                        help="which files under folders to take, e.g. '**/*.md' (repeatable; default: all)")
    parser.add_argument("--exclude", action="append", default=[], help="glob of files to leave out (repeatable)")
    parser.add_argument("--delete-missing", action="store_true",
                        help="remove the chunks of files under these paths that no longer exist on disk")
    parser.add_argument("--prune-missing", action="store_true",
                        help="remove the chunks of every file of the collection that no longer exists "
                             "(no PATH needed)")
    parser.add_argument("--follow-links", action="store_true",
                        help="follow symbolic links that point outside the paths given (indexed under the "
                             "link's own path)")
    parser.add_argument("--no-wait", action="store_true",
                        help="fail at once if another ingest of the collection is running, instead of waiting")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (they are drawn only when stderr is a terminal anyway)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict
    from pathlib import Path

    from plait.commands._checks import CLIError, UsageError, open_store, require_collection
    from plait.retrievers.indexing import IngestBusy, ingest

    if not args.paths and not args.prune_missing:
        raise UsageError("give the files or folders to index (or --prune-missing alone to remove the files "
                         "of the collection that no longer exist)")
    missing = [p for p in args.paths if not Path(p).exists() and not Path(p).is_symlink()]
    if missing and not args.delete_missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}; check the path (with --delete-missing, "
                         "a path that is gone has its files removed from the collection)")
    if args.paths:
        store = open_store(args.collection, args.store)
    else:  # only pruning: a typo'd collection gets "did you mean", not a new empty collection
        store = require_collection(args, allow_empty=True)
    try:
        report = ingest(args.paths, store=store, glob=args.glob or "**/*", exclude=args.exclude,
                        delete_missing=args.delete_missing, prune_missing=args.prune_missing,
                        follow_links=args.follow_links, wait=not args.no_wait,
                        progress=not args.no_progress and sys.stderr.isatty())
    except IngestBusy as e:
        raise CLIError(str(e)) from None
    if args.json:
        print(json.dumps({**asdict(report), "collection": args.collection, "chunks": store.count()}, indent=2))
    else:
        print(report.summary())
        print(f"collection {args.collection!r} now holds {store.count()} chunks")
    if not args.paths or (missing and len(missing) == len(args.paths)):
        return 0  # only removing
    if report.files_seen == 0 and report.files_deleted == 0:
        raise CLIError(f"no files to index under {', '.join(args.paths)}"
                       + (f" matching {', '.join(args.glob)}" if args.glob else "") + "; check the paths and --glob")
    if report.files_added + report.files_updated + report.files_unchanged == 0:
        raise CLIError(f"every file was skipped ({len(report.skipped)}; reasons above), so nothing was indexed")
    return 0
