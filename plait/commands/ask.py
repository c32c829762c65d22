"""``plait ask QUESTION``: answer from the indexed documents, streaming, then list the sources."""

from __future__ import annotations

import argparse
import sys

from plait.commands._common import add_model_options, add_rag_options, add_store_options


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", nargs="+", help="the question (quotes optional)")
    add_model_options(parser)
    add_store_options(parser)
    add_rag_options(parser)
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON instead")


def run(args: argparse.Namespace) -> int:
    from plait.chains.rag import RAGChain
    from plait.commands._common import make_model, make_retriever, model_options, open_store, print_sources

    question = " ".join(args.question)
    store = open_store(args)
    if store.count() == 0:
        print(f"plait ask: the collection {args.collection!r} is empty; index files first with "
              f"`plait ingest PATH --collection {args.collection}`", file=sys.stderr)
        return 1
    chain = RAGChain(make_retriever(store, args.k, args.min_similarity), make_model(args), k=args.k,
                     model_options=model_options(args))
    if args.json:
        print(chain.invoke(question).model_dump_json(indent=2))
        return 0
    total = None
    for chunk in chain.stream(question):
        print(chunk.answer, end="", flush=True)
        total = chunk if total is None else total + chunk
    print()
    if total is not None:
        print_sources(total)
    return 0
