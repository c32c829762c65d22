"""What the ``ingest``, ``ask``, ``chat`` and ``demo`` commands share: options, model, store, printing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from plait.defaults import DEFAULT_COLLECTION, DEFAULT_MIN_SIMILARITY


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="local",
                        help="chat model: 'local' (bundled SmolLM2, offline; default), 'local:PATH_OR_ID', "
                             "or 'openai:MODEL' for an OpenAI-compatible server")
    parser.add_argument("--base-url", default=None,
                        help="base URL of the OpenAI-compatible server (default: $OPENAI_BASE_URL)")
    parser.add_argument("--api-key", default=None, help="API key for --model openai:... (default: $OPENAI_API_KEY)")
    parser.add_argument("--max-tokens", type=int, default=None, help="most tokens in an answer")
    parser.add_argument("--adapter", default=None, metavar="DIR",
                        help="a LoRA adapter folder (from `plait tune`) for a local model; with --model local the "
                             "bundled 'cite' adapter answers (it writes [n] markers), 'none' for the base model")


def add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--collection", default=DEFAULT_COLLECTION,
                        help=f"collection in the embedded Chroma store (default: {DEFAULT_COLLECTION})")
    parser.add_argument("--store", default=None,
                        help="folder of the embedded store (default: $PLAIT_HOME/chroma, "
                             "else ~/.local/share/plait/chroma)")


def add_rag_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-k", type=int, default=3, help="passages shown to the model (default: 3)")
    parser.add_argument("--min-similarity", type=float, default=DEFAULT_MIN_SIMILARITY,
                        help="say 'I don't know' unless the best passage has at least this cosine "
                             "similarity to the question, or one passage holds every word of the question "
                             f"that carries meaning (default: {DEFAULT_MIN_SIMILARITY}; 0 turns the check off)")


def make_model(args: argparse.Namespace) -> Any:
    """The chat model named by ``--model`` for a RAG command (weights load on first use).

    The bundled model (``--model local``) answers with the bundled ``cite`` adapter unless ``--adapter``
    names another or ``none``: it cites its passages (SciFact, 50 claims: citation precision 0.47 ->
    0.72, markers written by the model 38% -> 96%; ``benchmarks/finetune_rag.py``).
    """
    from plait.models import chat_model_from_spec

    kwargs: dict[str, Any] = {}
    if args.model.startswith("openai"):
        if args.base_url:
            kwargs["base_url"] = args.base_url
        if getattr(args, "api_key", None):
            kwargs["api_key"] = args.api_key
    elif args.base_url:
        raise SystemExit("--base-url only applies to --model openai:MODEL")
    adapter = getattr(args, "adapter", None)
    if adapter is None and args.model.strip() == "local":
        from plait.defaults import cite_adapter_path

        adapter = cite_adapter_path()
    if adapter == "none":
        adapter = None
    if adapter:
        if not args.model.startswith("local"):
            raise SystemExit("--adapter only applies to local models (--model local or local:PATH_OR_ID)")
        if not (Path(adapter).expanduser() / "adapter_config.json").is_file():
            raise SystemExit(f"error: --adapter {adapter!r} is not a PEFT adapter folder (no adapter_config.json); "
                             "pass a folder written by `plait tune`, or 'none'")
        kwargs["adapter"] = adapter
    return chat_model_from_spec(args.model, **kwargs)


def open_store(args: argparse.Namespace) -> Any:
    from plait.defaults import default_store

    return default_store(args.collection, path=args.store)


def make_retriever(store: Any, k: int, min_similarity: float) -> Any:
    """Hybrid retrieval (dense + BM25), gated by dense similarity so off-topic questions get no passages."""
    from plait.defaults import default_retriever

    return default_retriever(store=store, k=k, min_similarity=min_similarity)


def refusal_note(retriever: Any, question: str, result: Any) -> str:
    """Why the relevance gate gave the model no passages, and the option that turns it off."""
    if result.sources or not hasattr(retriever, "why_closed"):
        return ""
    why = retriever.why_closed(question)
    return f"no passage passed the relevance check: {why}; --min-similarity 0 turns the check off" if why else ""


def model_options(args: argparse.Namespace, default_max_tokens: int = 96) -> dict[str, Any]:
    """Generation options for answers. The small local model stops at the end of its first
    paragraph: past it, it tends to wander into code samples and lists unrelated to the passages.
    It also gets a light frequency penalty: greedy SmolLM2-135M loops on a phrase (the demo's
    "all-MiniLM-L6-v2-v2-v2-v2..." until max_tokens); 0.3 lets it repeat a word a few times, not forever."""
    options: dict[str, Any] = {"max_tokens": args.max_tokens or default_max_tokens}
    if args.model.startswith("local"):
        options["stop"] = ["\n\n"]
        options["frequency_penalty"] = 0.3
    return options


def short_source(path: str | None) -> str:
    """A source path relative to the current folder when it is inside it."""
    from plait.chains.citations import short_path

    return short_path(path) if path else "unknown source"


def citation_note(result: Any) -> str:
    """How the answer's citations came about, when the model's own markers are not the whole story."""
    dropped = " ".join(f"[{n}]" for n in getattr(result, "dropped_markers", []))
    removed = (f"removed {dropped} from the answer: only {len(result.sources)} passage"
               f"{'s were' if len(result.sources) != 1 else ' was'} retrieved") if dropped else ""
    if result.citation_note:  # inferred, or tried to: it names any dropped markers itself
        return str(result.citation_note)
    if result.citation_method == "none":
        return "; ".join(p for p in ("no passage was cited", removed) if p)
    return removed


def print_sources(result: Any, out: TextIO | None = None) -> None:
    """The sources (path, page, characters), the cited ones starred, and how citations were chosen."""
    out = out or sys.stdout
    if not result.sources:
        return
    cited = {s.number for s in result.citations}
    print("\nSources (* cited):" if cited else "\nSources:", file=out)
    for s in result.sources:
        mark = "*" if s.number in cited else " "
        print(f" {mark}{s.label(relative=True)}", file=out)
    note = citation_note(result)
    if note:
        print(f"  ({note})", file=out)
