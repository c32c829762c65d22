"""Opening chromadb clients for :class:`~plait.retrievers.chroma.ChromaStore`, and what Chroma keeps.

One function per kind of client (in memory, embedded on disk, a Chroma server), all with plait's
settings (no telemetry, no reset); a server that cannot be reached raises :class:`ConnectionError`
saying how to start one. :func:`chroma_metadata` turns a chunk's metadata into what Chroma
stores (its values are str, int, float or bool), which every side then returns the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plait.defaults import require


def chroma_metadata(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """Chroma keeps str/int/float/bool values: drop None, store anything else as JSON text."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if value is None:
            continue
        out[str(key)] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value, default=str)
    return out or None


def settings() -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False, allow_reset=False)


def _chromadb() -> Any:
    require("chromadb", "chroma")
    import chromadb

    return chromadb


def open_memory() -> Any:
    """A client whose collections live in this process only (shared by its in-memory clients)."""
    return _chromadb().EphemeralClient(settings=settings())


def open_persistent(path: Path) -> Any:
    """A client of the embedded store in ``path`` (created if missing)."""
    path.mkdir(parents=True, exist_ok=True)
    return _chromadb().PersistentClient(path=str(path), settings=settings())


def open_http(host: str, port: int, ssl: bool, headers: dict[str, str] | None) -> Any:
    """A client of the Chroma server at ``host:port``."""
    chromadb = _chromadb()
    try:
        return chromadb.HttpClient(host=host, port=port, ssl=ssl, headers=headers, settings=settings())
    except Exception as e:
        raise ConnectionError(f"Cannot reach the Chroma server at {host}:{port} ({e}); start "
                              f"one with: chroma run --path DIR --port {port}") from e
