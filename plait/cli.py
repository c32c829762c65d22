"""The ``plait`` command line: ``plait ingest | ask | chat | imagine | serve | demo``.

Each command lives in its own module under ``plait.commands`` with ``configure(parser)`` and
``run(args) -> int``; only the module of the command being run is imported, so ``plait --help``
stays fast and a missing extra only matters for the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). A static table, not a registry: read it to see every command.
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("plait.commands.ingest", "index files or folders into a collection"),
    "ask": ("plait.commands.ask", "answer a question from the indexed documents, with sources"),
    "chat": ("plait.commands.chat", "interactive chat over the documents, with persistent history"),
    "imagine": ("plait.commands.imagine", "draw an image from a text prompt"),
    "serve": ("plait.commands.serve", "serve a chain or model over an OpenAI-compatible HTTP API"),
    "demo": ("plait.commands.demo", "the main job: ingest the docs, answer questions, draw an image"),
}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plait", description="plait: composable LLM apps, offline by default.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
