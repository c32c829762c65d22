"""``plait chat``: an interactive conversation over the indexed documents, with persistent history.

Each question is rewritten into a standalone question using the conversation, retrieved and
answered with citations; the conversation is stored under ``--session`` in
``<data dir>/history.sqlite3``, so ``plait chat --session work`` carries on where it stopped.
Commands: ``/sources`` (the last answer's sources), ``/history``, ``/clear``, ``/quit``.
The model and the collection are checked before anything loads (as for ``plait ask``), and each
answer is logged (``plait logs``) unless ``--no-log``.
"""

from __future__ import annotations

import argparse
import time

from plait.commands._answers import add_log_option
from plait.commands._common import add_model_options, add_rag_options, add_store_options


def configure(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.set_defaults(model=None)  # the config's default model, resolved in run()
    add_store_options(parser)
    add_rag_options(parser)
    parser.add_argument("--session", default="default", help="conversation id to continue (default: default)")
    parser.add_argument("--history-db", default=None,
                        help="SQLite file of chat histories (default: <data dir>/history.sqlite3)")
    add_log_option(parser)


def run(args: argparse.Namespace) -> int:
    from plait.commands._checks import require_collection, resolve_chat_model

    resolve_chat_model(args)
    store = require_collection(args)

    from plait.chains.conversational import ConversationalRAG
    from plait.chains.history import SQLiteChatHistory
    from plait.commands._answers import generation_options, log_answer
    from plait.commands._common import citation_note, make_model, make_retriever, print_sources, refusal_note

    history = SQLiteChatHistory(args.history_db)
    retriever = make_retriever(store, args.k, args.min_similarity)
    chain = ConversationalRAG(retriever, make_model(args), history=history, k=args.k,
                              model_options=generation_options(args))
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
        started = time.perf_counter()
        for chunk in chain.stream({"question": line, "session_id": args.session}):
            print(chunk.answer, end="", flush=True)
            last = chunk if last is None else last + chunk
        print()
        if last is not None:
            log_answer(args, "chat", line, last, time.perf_counter() - started, session=args.session)
        note = refusal_note(retriever, last.question or line, last) if last is not None else ""
        if note:
            print(f"   ({note})")
        if last is not None and last.sources:
            cited = "  ".join(s.label(relative=True) for s in last.citations)
            note = citation_note(last)
            print("   " + "  ".join(p for p in (cited, f"({note})" if note else "") if p))
