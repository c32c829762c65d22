"""What ``plait ask`` and ``plait chat`` share after the checks: generation options and the log."""

from __future__ import annotations

import argparse
from typing import Any

MODEL_HELP = ("--model takes a spec (local, local:PATH_OR_ID, openai:MODEL) or an alias; without it the config's "
              "default is used (plait config set model SPEC), else local. Aliases: plait config set aliases.NAME "
              "SPEC; per-model options: plait config set options.SPEC.temperature 0.2; the openai key: --api-key, "
              "$OPENAI_API_KEY or plait keys set openai. plait models shows what each resolves to.")


def add_log_option(parser: argparse.ArgumentParser) -> None:
    """``--no-log``; also ends the help with how ``--model`` is resolved (ask and chat take both)."""
    parser.epilog = MODEL_HELP
    parser.add_argument("--no-log", action="store_true",
                        help="do not add the prompt and answer to the log (plait logs; "
                             "`plait config set log false` turns it off for good)")


def generation_options(args: argparse.Namespace) -> dict[str, Any]:
    """The command's defaults for the model, then the config's ``options.SPEC.*``, then ``--max-tokens``."""
    from plait import config
    from plait.commands._common import model_options

    options = model_options(args)
    options.update(config.model_options(args.model))
    if args.max_tokens:
        options["max_tokens"] = args.max_tokens
    return options


def should_log(args: argparse.Namespace) -> bool:
    from plait import config

    return not args.no_log and config.logging_enabled()


def log_answer(args: argparse.Namespace, command: str, prompt: str, result: Any, seconds: float,
               session: str | None = None) -> None:
    """Add one answer (a RAG answer with its sources) to the log, unless logging is off."""
    if not should_log(args):
        return
    from plait.logs import LogDB

    cited = {s.number for s in getattr(result, "citations", [])}
    sources = [{"number": s.number, "source": s.source, "cited": s.number in cited}
               for s in getattr(result, "sources", [])]
    usage = result.usage.model_dump() if getattr(result, "usage", None) is not None else None
    db = LogDB()
    try:
        db.add(command=command, model=args.model, prompt=prompt, answer=result.answer, collection=args.collection,
               session=session, sources=sources, usage=usage, duration_ms=int(seconds * 1000))
    finally:
        db.close()
