"""``plait keys``: API keys in ``<data dir>/keys.json`` (readable by its owner only, mode 0600).

    plait keys set openai            # asks for the key (or reads it from stdin: echo $KEY | plait keys set openai)
    plait keys list                  # the names, never the keys
    plait keys remove openai
    plait keys path

The ``openai`` key is used by ``--model openai:...`` when neither ``--api-key`` nor
``$OPENAI_API_KEY`` gives one.
"""

from __future__ import annotations

import argparse
import json
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (__doc__ or "").split("\n\n")[1]
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    set_ = sub.add_parser("set", help="store a key, read from the prompt or stdin")
    set_.add_argument("name", metavar="NAME", help="what the key is for, e.g. openai")
    listing = sub.add_parser("list", help="the names of the stored keys")
    listing.add_argument("--json", action="store_true", help="print the names as JSON")
    remove = sub.add_parser("remove", help="delete a stored key")
    remove.add_argument("name", metavar="NAME")
    sub.add_parser("path", help="print where the keys file is")


def _read_key(name: str) -> str:
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"{name} key: ")
    return sys.stdin.readline().strip()


def run(args: argparse.Namespace) -> int:
    from plait import config
    from plait.commands._checks import CLIError, UsageError

    action = args.action or "list"
    if action == "path":
        print(config.keys_path())
    elif action == "set":
        key = _read_key(args.name)
        if not key:
            raise UsageError(f"no key given; type it at the prompt or pipe it in: echo KEY | plait keys set {args.name}")
        config.set_key(args.name, key)
        print(f"stored the {args.name} key in {config.keys_path()}", file=sys.stderr)
    elif action == "remove":
        if not config.remove_key(args.name):
            raise CLIError(f"no {args.name!r} key is stored; `plait keys list` shows the names")
    elif getattr(args, "json", False):
        print(json.dumps(config.key_names()))
    else:
        for name in config.key_names():
            print(name)
    return 0
