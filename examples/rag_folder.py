"""RAG over a folder: ingest the files, then answer a question with cited sources.

Run: .venv/bin/python examples/rag_folder.py [FOLDER] ["question"]   (default: this project's docs/)
The index lives in a collection named after the folder (``docs`` for docs/, ``my-notes`` for
~/my notes/) in the embedded Chroma store in $PLAIT_HOME; it is incremental: running it again
skips unchanged files. `plait ask "..." --collection NAME` asks the same collection.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from plait.chains.rag import RAGChain
from plait.retrievers.chroma import ChromaStore
from plait.retrievers.indexing import ingest

try:
    from examples._model import example_model
except ImportError:
    from _model import example_model  # type: ignore[no-redef]

DOCS = Path(__file__).resolve().parents[1] / "docs"


def collection_for(folder: str | Path) -> str:
    """A collection name after the folder, within Chroma's rules (3-512 of a-zA-Z0-9._-, alphanumeric ends)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(folder).expanduser().resolve().name).strip("._-")[:512]
    return name if len(name) >= 3 else f"folder-{name or 'root'}"


def main(model: Any = None, folder: str | Path = DOCS,
         question: str = "How does plait stream tokens through a chain?") -> Any:
    name = collection_for(folder)
    store = ChromaStore(name)
    report = ingest([folder], store=store, progress=False)
    print(f"collection {name!r}: {report.summary()}")
    chain = RAGChain(store.as_retriever(k=3), example_model(model), k=3, model_options={"max_tokens": 64})
    print(f"Q: {question}\nA: ", end="")
    result = None
    for chunk in chain.stream(question):
        print(chunk.answer, end="", flush=True)
        result = chunk if result is None else result + chunk
    print()
    assert result is not None
    for source in result.citations:
        print(f"[{source.number}] {source.label()}")
    return result


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--") and a not in sys.argv[sys.argv.index("--model") + 1:
                                                                                   sys.argv.index("--model") + 2]] \
        if "--model" in sys.argv else sys.argv[1:]
    main(None, *args[:2])
