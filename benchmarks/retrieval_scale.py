"""Retrieval at scale: N chunks of real text written through plait's store, then timed queries.

placeholder: main() comes next.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
TOPICS = [f"topic{i}" for i in range(10)]


def sentences(data: Path = SCIFACT) -> list[str]:
    """Every sentence of the corpus (split after '.'), at least 20 characters long."""
    out: list[str] = []
    with open(data / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            out += [s.strip() for s in re.split(r"(?<=\.)\s+", text) if len(s.strip()) >= 20]
    return out


def synthetic_chunks(n: int, *, seed: int = 0, data: Path = SCIFACT) -> Iterator[tuple[str, str, dict[str, object]]]:
    """``n`` chunks ``(id, text, metadata)`` of real sentences, deterministic for a given seed.

    Five sentences per chunk, two chunks per document ``doc{d}.txt``, with a splitter's metadata
    (``source``, ``format``, ``chunk``, ``start``, ``end``) and a ``topic`` (one of 10) to filter on.
    """
    pool = sentences(data)
    rng = random.Random(seed)
    end = 0
    for i in range(n):
        d, c = divmod(i, 2)
        text = " ".join(rng.choice(pool) for _ in range(5))
        start = 0 if c == 0 else end + 1  # the two chunks of a document follow each other
        end = start + len(text)
        meta: dict[str, object] = {"source": f"doc{d}.txt", "format": "text", "topic": TOPICS[d % len(TOPICS)],
                                   "chunk": c, "start": start, "end": end}
        yield f"d{d}-c{c}", text, meta
