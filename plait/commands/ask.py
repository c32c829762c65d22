"""``plait ask QUESTION``: answer from the indexed documents, streaming, then list the sources.

Everything is checked before a model loads: the question, the model (``--model``: a spec or an
alias from the config; default: the config's ``model``, else ``local``), its key and server, and
the collection (a typo gets "did you mean"; nothing is created). Each answer is logged
(``plait logs``) unless ``--no-log``.
"""

from __future__ import annotations

import argparse
import time

from plait.commands._answers import add_log_option
from plait.commands._common import add_model_options, add_rag_options, add_store_options


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", nargs="+", help="the question (quotes optional)")
    add_model_options(parser)
    parser.set_defaults(model=None)  # the config's default model, resolved in run()
    add_store_options(parser)
    add_rag_options(parser)
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON instead")
    add_log_option(parser)


def run(args: argparse.Namespace) -> int:
    from plait.commands._checks import require_collection, require_text, resolve_chat_model

    question = require_text(" ".join(args.question), "question", 'plait ask "How do I install it?"')
    resolve_chat_model(args)
    store = require_collection(args)

    from plait.chains.rag import RAGChain
    from plait.commands._answers import generation_options, log_answer
    from plait.commands._common import make_model, make_retriever, print_sources, refusal_note

    retriever = make_retriever(store, args.k, args.min_similarity)
    chain = RAGChain(retriever, make_model(args), k=args.k, model_options=generation_options(args))
    started = time.perf_counter()
    if args.json:
        result = chain.invoke(question)
        print(result.model_dump_json(indent=2))
    else:
        result = None
        for chunk in chain.stream(question):
            print(chunk.answer, end="", flush=True)
            result = chunk if result is None else result + chunk
        print()
        if result is not None:
            print_sources(result)
            note = refusal_note(retriever, question, result)
            if note:
                print(f"({note})")
    if result is not None:
        log_answer(args, "ask", question, result, time.perf_counter() - started)
    return 0
