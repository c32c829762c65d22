"""``plait demo``: the main job, offline, on the embedded defaults.

1. ingest the project's own documentation (README.md and docs/) into the embedded Chroma store
   (incremental: a second run skips unchanged files);
2. answer three questions about plait with the bundled SmolLM2 model, streaming each answer and
   listing the cited sources (path and character span);
3. draw one image with the embedded image model and print where it was saved (when the image
   model is installed).

Everything runs on the CPU with the bundled models; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from plait.commands._common import DEFAULT_MIN_SIMILARITY, add_model_options

QUESTIONS = (
    "How do you compose two steps in plait?",
    "Where does plait keep the embedded Chroma store?",
    "Which local chat model does plait use by default?",
)
IMAGE_PROMPT = "a small red circle on the left"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.add_argument("--collection", default="plait-docs", help="collection for the docs (default: plait-docs)")
    parser.add_argument("--docs", default=None,
                        help="folder holding README.md and docs/ (default: the plait source checkout)")
    parser.add_argument("--question", action="append", default=None,
                        help="ask this instead of the three built-in questions (repeatable)")
    parser.add_argument("--no-image", action="store_true", help="skip the image step")
    parser.add_argument("--out", default=None, help="where to save the image (default: <data dir>/demo.png)")
    parser.add_argument("--trace", action="store_true", help="print the tree of steps of each answer")


def _docs_root(arg: str | None) -> Path:
    root = Path(arg) if arg else Path(__file__).resolve().parents[2]
    if not (root / "README.md").exists() and not (root / "docs").is_dir():
        raise SystemExit(f"plait demo: no README.md or docs/ under {root}; run it from a plait checkout "
                         "or pass --docs FOLDER")
    return root


def _section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(args: argparse.Namespace) -> int:
    from plait.chains.rag import RAGChain
    from plait.commands._common import make_model, model_options, print_sources
    from plait.defaults import chroma_dir, data_dir, default_retriever, default_store
    from plait.retrievers.indexing import ingest

    t_start = time.perf_counter()
    root = _docs_root(args.docs)
    paths = [p for p in (root / "README.md", root / "docs") if p.exists()]

    _section(f"1. Ingesting {', '.join(str(p.relative_to(root)) for p in paths)} "
             f"into collection {args.collection!r} ({chroma_dir()})")
    store = default_store(args.collection)
    report = ingest(paths, store=store, glob=["**/*.md"], delete_missing=True, progress=sys.stderr.isatty())
    print(report.summary(), flush=True)

    who = ("the bundled SmolLM2-135M-Instruct, which shows the plumbing, not answer quality; "
           "--model openai:MODEL for a real model" if args.model == "local" else args.model)
    _section(f"2. Answering questions with {who} (retrieval: hybrid dense + BM25, gated by relevance)")
    model = make_model(args)
    retriever = default_retriever(store=store, k=3, min_similarity=DEFAULT_MIN_SIMILARITY)
    chain = RAGChain(retriever, model, k=3, model_options=model_options(args))
    runnable = chain.with_tracing() if args.trace else chain
    tokens = 0
    gen_seconds = 0.0
    for question in args.question or QUESTIONS:
        print(f"\nQ: {question}\nA: ", end="", flush=True)
        t0 = time.perf_counter()
        total = None
        for chunk in runnable.stream(question):
            print(chunk.answer, end="", flush=True)
            total = chunk if total is None else total + chunk
        elapsed = time.perf_counter() - t0
        print()
        if total is not None:
            print_sources(total)
            if total.usage:
                tokens += total.usage.completion_tokens
                gen_seconds += elapsed
        print(f"({elapsed:.1f}s)", flush=True)
    if tokens:
        print(f"\n{tokens} tokens generated, {tokens / gen_seconds:.1f} tokens/s including retrieval")

    if not args.no_image:
        _section("3. Drawing an image with the embedded image model")
        _draw(args, Path(args.out) if args.out else data_dir() / "demo.png")

    print(f"\nDemo finished in {time.perf_counter() - t_start:.0f}s.")
    return 0


def _draw(args: argparse.Namespace, out: Path) -> None:
    """One image from the bundled text-to-image model, through the ``plait imagine`` command."""
    import importlib.util

    from plait.defaults import image_model_path

    if importlib.util.find_spec("plait.commands.imagine") is None or not Path(image_model_path()).exists():
        print("(skipped: the bundled image model is not part of this installation)", file=sys.stderr)
        return
    from plait.cli import main

    print(f"prompt: {IMAGE_PROMPT!r}", flush=True)
    code = main(["imagine", IMAGE_PROMPT, "-o", str(out), "--seed", "0", "--scale", "4"])
    if code != 0:
        raise SystemExit(f"plait demo: the image step failed (exit code {code})")
    print(f"image saved to {out}")
