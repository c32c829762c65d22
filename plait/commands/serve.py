"""``plait serve``: a chain or model behind an OpenAI-compatible HTTP API and a web chat page.

    plait serve mypackage.chains:qa_chain          # any Runnable (or a function returning one)
    plait serve --model local                       # the bundled local chat model
    plait serve --model openai:gpt-4o-mini          # a remote model, re-served
    plait serve --rag docs                          # the default RAG chain over a collection
    plait serve --rag docs --model openai:gpt-4o    # ... answering with another model

The API key comes from ``--api-key`` or ``$PLAIT_API_KEY``; it is required whenever ``--host`` is
not a loopback address, so a server reachable from the network is never open by accident.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

API_KEY_ENV = "PLAIT_API_KEY"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", metavar="MODULE:OBJECT",
                        help="the Runnable to serve (an object, or a function called with no arguments)")
    parser.add_argument("--model", metavar="SPEC",
                        help="serve a chat model (with --rag: the chain's model): local, local:PATH_OR_ID, openai:MODEL")
    parser.add_argument("--rag", metavar="COLLECTION", help="serve the default RAG chain over a collection")
    parser.add_argument("--store", default=None, help="with --rag: folder of the embedded store (default: the data dir)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--api-key", default=None,
                        help=f"clients must send 'Authorization: Bearer KEY' (default: ${API_KEY_ENV})")
    parser.add_argument("--name", help="the model id clients use (default: the model's name, or 'plait')")
    parser.add_argument("--input-key", help="for a chain taking a dict: the key for the user's message text")
    parser.add_argument("--history-key", help="for such a chain: the key for the earlier messages")
    parser.add_argument("--max-concurrency", type=int, default=256, help="requests in flight before 429 (256)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request (300)")
    parser.add_argument("--max-body", type=int, default=2 * 1024 * 1024, help="largest request body in bytes (2 MiB)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="allow browser calls from this origin (repeatable; default: CORS off)")
    parser.add_argument("--graceful-timeout", type=float, default=30.0,
                        help="on SIGTERM/Ctrl-C, seconds that streams in flight get to finish (30)")
    parser.add_argument("--access-log", action="store_true", help="log one line per request")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def load_target(spec: str) -> Any:
    """Import ``module:object`` (``object`` may be dotted); a function is called to build the object."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"error: {spec!r} is not MODULE:OBJECT (e.g. myapp.chains:qa_chain)")
    sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise SystemExit(f"error: cannot import {module_name!r}: {e}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(f"error: {module_name!r} has no attribute {attr!r}") from None
    from plait.runnable import Runnable

    if not isinstance(obj, Runnable) and callable(obj) and not hasattr(obj, "embed_documents"):
        obj = obj()
    return obj


def rag_chain(collection: str, model_spec: str, store: str | None = None) -> Any:
    """The chain ``plait ask`` uses (hybrid retrieval gated by relevance, citations) over ``collection``."""
    from plait.chains.rag import RAGChain
    from plait.commands._common import DEFAULT_MIN_SIMILARITY, make_retriever, open_store
    from plait.models import chat_model_from_spec

    opened = open_store(argparse.Namespace(collection=collection, store=store))
    if opened.count() == 0:
        raise SystemExit(f"error: the collection {collection!r} is empty; index files first with "
                         f"`plait ingest PATH --collection {collection}`")
    try:
        model = chat_model_from_spec(model_spec)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    return RAGChain(make_retriever(opened, 3, DEFAULT_MIN_SIMILARITY), model, k=3)


def build_target(args: argparse.Namespace) -> Any:
    if bool(args.target) + bool(args.model or args.rag) != 1:
        raise SystemExit("error: give MODULE:OBJECT, or --model SPEC, or --rag COLLECTION (with --model for "
                         "the RAG chain's model)")
    if args.target:
        return load_target(args.target)
    if args.rag:
        return rag_chain(args.rag, args.model or "local", args.store)
    from plait.models import chat_model_from_spec

    try:
        return chat_model_from_spec(args.model)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


def run(args: argparse.Namespace) -> int:
    from plait.serve.server import is_loopback

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if not is_loopback(args.host) and not api_key:
        print(f"error: --host {args.host} is reachable from other machines; set an API key with --api-key "
              f"or ${API_KEY_ENV} (clients then send 'Authorization: Bearer KEY')", file=sys.stderr)
        return 2
    target = build_target(args)

    from plait.serve import ServeConfig, create_app, run_server

    config = ServeConfig(api_key=api_key, max_body_bytes=args.max_body, timeout_s=args.timeout,
                         max_concurrency=args.max_concurrency, cors_origins=list(args.cors_origin),
                         input_key=args.input_key, history_key=args.history_key, name=args.name)
    app = create_app(target, config)
    shown = "localhost" if args.host in ("0.0.0.0", "::") else args.host
    print(f"plait: serving {', '.join(app.state.served.model_ids())} on http://{shown}:{args.port} "
          f"(OpenAI base_url: http://{shown}:{args.port}/v1; chat page: http://{shown}:{args.port}/)"
          + ("" if api_key else "; no API key"), file=sys.stderr, flush=True)
    run_server(app, args.host, args.port, log_level=args.log_level, graceful_timeout_s=args.graceful_timeout,
               access_log=args.access_log)
    return 0
