"""``plait serve``: a chain or model behind an OpenAI-compatible HTTP API and a web chat page.

    plait serve mypackage.chains:qa_chain          # any Runnable (or a function returning one)
    plait serve --model local                       # the bundled local chat model
    plait serve --model openai:gpt-4o-mini          # a remote model, re-served
    plait serve --rag docs                          # the default RAG chain over a collection
    plait serve --rag docs --model openai:gpt-4o    # ... answering with another model
    plait serve --model local --embeddings local --image-model local   # chat, embeddings and images

``--embeddings SPEC`` adds ``/v1/embeddings`` (``local`` = the bundled MiniLM, ``local:PATH_OR_ID``,
``openai:MODEL``); ``--image-model SPEC`` adds ``/v1/images/generations`` (``local`` = the bundled
plait-shapes model, ``diffusion:PATH_OR_ID``, ``openai:MODEL``). Either may also be served alone.

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
    parser.add_argument("--embeddings", metavar="SPEC",
                        help="also serve /v1/embeddings: local (bundled MiniLM), local:PATH_OR_ID, openai:MODEL")
    parser.add_argument("--image-model", metavar="SPEC",
                        help="also serve /v1/images/generations: local (bundled plait-shapes), diffusion:PATH_OR_ID, "
                             "openai:MODEL")
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
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="also answer requests whose Host header is NAME (repeatable; '*' for any). The bound "
                             "address, localhost, 127.0.0.1 and ::1 are always allowed")
    parser.add_argument("--header-timeout", type=float, default=10.0,
                        help="seconds a connection gets to send a request's headers (10)")
    parser.add_argument("--body-timeout", type=float, default=30.0,
                        help="seconds a request gets to send its body (30)")
    parser.add_argument("--idle-timeout", type=float, default=15.0,
                        help="seconds an idle keep-alive connection stays open (15)")
    parser.add_argument("--max-connections", type=int, default=None,
                        help="open connections at most (default 1024, fewer when the file limit is lower)")
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

    if not isinstance(obj, Runnable) and callable(obj):
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
    if model_spec.strip() == "local":  # the bundled model answers with its citation adapter, as in `plait ask`
        from plait.defaults import cite_adapter_path

        model_spec = f"local+adapter:{cite_adapter_path()}"
    try:
        model = chat_model_from_spec(model_spec)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    return RAGChain(make_retriever(opened, 3, DEFAULT_MIN_SIMILARITY), model, k=3)


def _from_spec(make: Any, spec: str) -> Any:
    try:
        return make(spec)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


def build_target(args: argparse.Namespace) -> Any:
    """The chat target (MODULE:OBJECT, --model or --rag); ``None`` when only embeddings or images are served."""
    if args.target and (args.model or args.rag):
        raise SystemExit("error: give MODULE:OBJECT, or --model SPEC, or --rag COLLECTION (with --model for "
                         "the RAG chain's model), not both")
    if not (args.target or args.model or args.rag or args.embeddings or args.image_model):
        raise SystemExit("error: give MODULE:OBJECT, or --model SPEC, or --rag COLLECTION (with --model for "
                         "the RAG chain's model), or --embeddings / --image-model SPEC")
    if args.target:
        return load_target(args.target)
    if args.rag:
        return rag_chain(args.rag, args.model or "local", args.store)
    if args.model:
        from plait.models import chat_model_from_spec

        return _from_spec(chat_model_from_spec, args.model)
    return None


def build_app(args: argparse.Namespace, api_key: str | None) -> Any:
    """The app ``plait serve`` runs for these arguments: the target, plus embeddings and an image model."""
    from plait.models import embeddings_from_spec, image_model_from_spec
    from plait.serve import ServeConfig, create_app

    target = build_target(args)
    embeddings = _from_spec(embeddings_from_spec, args.embeddings) if args.embeddings else None
    images = _from_spec(image_model_from_spec, args.image_model) if args.image_model else None
    if target is None and images is not None:  # an image model answers chat requests too
        target, images = images, None
    elif target is None:  # embeddings alone: /v1/embeddings only
        target, embeddings = embeddings, None
    config = ServeConfig(api_key=api_key, max_body_bytes=args.max_body, timeout_s=args.timeout,
                         max_concurrency=args.max_concurrency, cors_origins=list(args.cors_origin),
                         input_key=args.input_key, history_key=args.history_key, name=args.name,
                         allowed_hosts=list(args.allowed_host), header_timeout_s=args.header_timeout,
                         body_timeout_s=args.body_timeout, idle_timeout_s=args.idle_timeout,
                         max_connections=args.max_connections)
    try:
        return create_app(target, config, embeddings=embeddings, images=images)
    except TypeError as e:
        raise SystemExit(f"error: {e}") from None


def _log_to_stderr(level: str) -> None:
    """plait's own server lines (a client that left, an error id) beside uvicorn's, at ``--log-level``."""
    import logging

    logger = logging.getLogger("plait")
    if not any(getattr(h, "plait_serve", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)-8s %(name)s: %(message)s"))
        handler.plait_serve = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def run(args: argparse.Namespace) -> int:
    from plait.serve.server import exposure_error

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    problem = exposure_error(args.host, api_key)
    if problem:
        print(f"error: --host {problem}", file=sys.stderr)
        return 2
    from plait.commands._checks import check_port, check_serve

    check_port(args.host, args.port)  # a busy port fails here, before the model loads and "serving" is printed
    check_serve(args)  # model specs (paths, cache, keys, servers) and the --rag collection, before anything loads
    app = build_app(args, api_key)

    from plait.serve import run_server

    _log_to_stderr(args.log_level)
    shown = "localhost" if args.host in ("0.0.0.0", "::") else args.host
    print(f"plait: serving {', '.join(app.state.served.model_ids())} on http://{shown}:{args.port} "
          f"(OpenAI base_url: http://{shown}:{args.port}/v1; chat page: http://{shown}:{args.port}/)"
          + ("" if api_key else "; no API key"), file=sys.stderr, flush=True)
    run_server(app, args.host, args.port, log_level=args.log_level, graceful_timeout_s=args.graceful_timeout,
               access_log=args.access_log)
    return 0
