"""What names a file and its chunks in ingestion (:mod:`plait.retrievers.indexing`).

A source is named by its absolute path (its folder resolved, its own name kept: a link is indexed
under the link's name); its content by the SHA-256 of its bytes; a chunk by a hash of (source,
chunk index, start offset, text), so the same file always gives the same chunk ids and an
unchanged chunk of an edited file keeps its id (it is not embedded again).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from plait.messages import Document
from plait.retrievers.loaders import LoadError, open_regular


def chunk_id(source: str, chunk: Document) -> str:
    """A chunk's stable id: the same file content always gives the same ids."""
    key = "\x1f".join([source, str(chunk.metadata.get("chunk")), str(chunk.metadata.get("start")), chunk.content])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def file_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes (LoadError if it cannot be read or is not a regular file)."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        try:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        except OSError as e:
            raise LoadError(path, f"cannot read the file ({e.strerror or e})", unreadable=True) from e
    return h.hexdigest()


def gone(source: str) -> bool:
    """True when nothing exists at ``source`` any more (a broken link counts as gone; an unreadable
    folder on the way does not: the file may well be there)."""
    try:
        os.stat(source)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def source_name(path: str | Path) -> str:
    """A path as the record names it: absolute, its folder resolved, its own name kept."""
    p = Path(os.path.abspath(Path(path).expanduser()))
    try:
        return str(p.parent.resolve() / p.name)
    except (OSError, RuntimeError):
        return str(p)
