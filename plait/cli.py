"""The ``plait`` command line: ``plait ingest | ask | chat | search | imagine | serve | ...``.

Each command lives in its own module under ``plait.commands`` with ``configure(parser)`` and
``run(args) -> int``; only the module of the command being run is imported, so ``plait --help``
stays fast and a missing extra only matters for the command that needs it.

Errors: a mistake the user can fix prints one line, ``error: what was wrong; what to do``, on
stderr, with exit code 2 for a wrong command line and 1 otherwise (see
:mod:`plait.commands._checks`). Anything else is a bug and keeps its traceback.

Quiet by default: the libraries' loading bars and warnings are off (``HF_HUB_DISABLE_PROGRESS_BARS=1``,
``TRANSFORMERS_VERBOSITY=error``, pypdf's warnings; set those variables to have them back), and
progress bars are drawn only when stderr is a terminal (else ``TQDM_DISABLE=1``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator

# name -> (module, one-line help). A static table, not a registry: read it to see every command.
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("plait.commands.ingest", "index files or folders into a collection"),
    "ask": ("plait.commands.ask", "answer a question from the indexed documents, with sources"),
    "chat": ("plait.commands.chat", "interactive chat over the documents, with persistent history"),
    "search": ("plait.commands.search", "retrieve passages for a query (no model), with scores"),
    "collections": ("plait.commands.collections", "list the collections, with chunk and file counts"),
    "index": ("plait.commands.index", "show, remove files from, or drop a collection"),
    "imagine": ("plait.commands.imagine", "draw an image from a text prompt"),
    "serve": ("plait.commands.serve", "serve a chain or model over an OpenAI-compatible HTTP API"),
    "models": ("plait.commands.models", "what model specs resolve to, and what is installed"),
    "config": ("plait.commands.config", "show or change settings: default model, aliases, model options"),
    "keys": ("plait.commands.keys", "store API keys (plait keys set openai)"),
    "logs": ("plait.commands.logs", "show the log of prompts and answers"),
    "tune": ("plait.commands.tune", "fine-tune a local model (LoRA) or a remote one on chat examples"),
    "demo": ("plait.commands.demo", "the main job: ingest the docs, answer questions, draw an image"),
}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("plait")
    except Exception:  # running from a source tree that is not installed
        import plait

        return str(plait.__version__)


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plait", description="plait: composable LLM apps, offline by default.")
    parser.add_argument("--version", action="version", version=f"plait {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).configure(p)
    return parser


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """No loading bars or library warnings unless asked for (an environment variable already set wins).

    The environment is put back afterwards, so running ``main()`` in-process leaves no trace.
    """
    quiet = {
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bar too
        "TRANSFORMERS_VERBOSITY": "error",  # e.g. "loss_type=None was set in the config but it is unrecognised"
        "TOKENIZERS_PARALLELISM": "false",
    }
    if not sys.stderr.isatty():  # bars that libraries draw without a switch (e.g. GGUF conversion)
        quiet["TQDM_DISABLE"] = "1"
    added = [k for k in quiet if k not in os.environ]
    for key in added:
        os.environ[key] = quiet[key]
    pypdf = logging.getLogger("pypdf")
    level = pypdf.level
    pypdf.setLevel(logging.ERROR)  # "invalid pdf header": the file is reported as skipped anyway
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
        pypdf.setLevel(level)


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
        with quiet_libraries():
            return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `plait logs -n 0 | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:
        from plait.commands._checks import CLIError, friendly_error

        message = friendly_error(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        return e.code if isinstance(e, CLIError) else 1


if __name__ == "__main__":
    sys.exit(main())
