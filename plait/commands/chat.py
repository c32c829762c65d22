"""``plait chat``: an interactive conversation over the indexed documents, with persistent history.

Each question is rewritten into a standalone question using the conversation, retrieved and
answered with citations; the conversation is stored under ``--session`` in
``<data dir>/history.sqlite3``, so ``plait chat --session work`` carries on where it stopped.
Commands: ``/sources`` (the last answer's sources), ``/history``, ``/clear``, ``/quit``.
"""

from __future__ import annotations

import argparse
import sys

from plait.commands._common import add_model_options, add_rag_options, add_store_options


def configure(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    add_store_options(parser)
    add_rag_options(parser)
    parser.add_argument("--session", default="default", help="conversation id to continue (default: default)")
    parser.add_argument("--history-db", default=None,
                        help="SQLite file of chat histories (default: <data dir>/history.sqlite3)")


def run(args: argparse.Namespace) -> int:
    from plait.chains.conversational import ConversationalRAG
    from plait.chains.history import SQLiteChatHistory
    from plait.commands._common import (
        make_model,
        make_retriever,
        model_options,
        open_store,
        print_sources,
        short_source,
    )

    store = open_store(args)
    if store.count() == 0:
        print(f"plait chat: the collection {args.collection!r} is empty; index files first with "
              f"`plait ingest PATH --collection {args.collection}`", file=sys.stderr)
        return 1
    history = SQLiteChatHistory(args.history_db)
    chain = ConversationalRAG(make_retriever(store, args.k, args.min_similarity), make_model(args),
                              history=history, k=args.k, model_options=model_options(args))
    earlier = history.messages(args.session)
    print(f"plait chat: session {args.session!r} ({len(earlier)} earlier messages). "
          "/sources /history /clear /quit", flush=True)
    last = None
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return 0
        if line == "/clear":
            history.clear(args.session)
            print("(history cleared)")
            continue
        if line == "/history":
            for m in history.messages(args.session):
                print(f"{m.role}: {m.content}")
            continue
        if line == "/sources":
            if last is not None:
                print_sources(last)
            continue
        print("plait> ", end="", flush=True)
        last = None
        for chunk in chain.stream({"question": line, "session_id": args.session}):
            print(chunk.answer, end="", flush=True)
            last = chunk if last is None else last + chunk
        print()
        if last is not None and last.citations:
            print("   " + "  ".join(f"[{s.number}] {short_source(s.source)}" for s in last.citations))
