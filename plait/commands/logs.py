"""``plait logs``: the prompts and answers of ``plait ask`` and ``plait chat``, newest last (like ``llm logs``).

    plait logs                  # the last 3
    plait logs -n 10            # the last 10 (-n 0: all)
    plait logs --json
    plait logs path             # where the SQLite file is
    plait logs off | on         # stop / start logging (the config's ``log``; --no-log skips one run)
"""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (__doc__ or "").split("\n\n")[1]
    parser.add_argument("action", nargs="?", default="list", choices=["list", "path", "on", "off"],
                        help="list (default), path, on or off")
    parser.add_argument("-n", "--count", type=int, default=3, help="how many, newest last (default: 3; 0: all)")
    parser.add_argument("--json", action="store_true", help="print the entries as JSON")


def run(args: argparse.Namespace) -> int:
    from plait import config
    from plait.commands._checks import UsageError
    from plait.logs import LogDB, log_path

    if args.action == "path":
        print(log_path())
        return 0
    if args.action in ("on", "off"):
        config.set_value("log", args.action == "on")
        print(f"logging is {args.action}")
        return 0
    if args.count < 0:
        raise UsageError(f"-n must be 0 (all) or more, not {args.count}")
    if not log_path().exists():
        entries = []
    else:
        db = LogDB()
        try:
            entries = db.recent(args.count)
        finally:
            db.close()
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    if not entries:
        state = "" if config.logging_enabled() else " (logging is off: plait logs on)"
        print(f"nothing logged yet{state}")
        return 0
    for e in entries:
        where = f"  collection: {e.collection}" if e.collection else ""
        session = f"  session: {e.session}" if e.session else ""
        print(f"# {e.datetime_utc}  {e.command}  model: {e.model}{where}{session}  (id {e.id})\n")
        print(f"## Prompt\n\n{e.prompt}\n\n## Answer\n\n{e.answer}\n")
        cited = [s for s in e.sources if s.get("cited")]
        if cited:
            print("## Sources\n\n" + "\n".join(f"[{s['number']}] {s['source']}" for s in cited) + "\n")
    return 0
