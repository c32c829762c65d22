"""Turn a GGUF file into a plain transformers folder once, and reuse it afterwards.

transformers can read GGUF files (``from_pretrained(folder, gguf_file=name)``), but it dequantizes
every tensor on each load (~20 s for SmolLM2-135M on 2 cores). Here the dequantized weights, the
config and the tokenizer are saved once as safetensors under
``plait.defaults.data_dir()/models/gguf/<name>-<sha256 prefix>/``, so later loads are a plain
``from_pretrained(folder)`` that memory-maps the weights. The chat model also keeps its prepared
4-bit decoder in that folder (``plait-decoder-int4-v2-torch<version>-<cpu>.safetensors``, see
:meth:`plait.local_models.llm.llama_decoder.LlamaDecoder.save`), which loads without transformers.

The key is the SHA-256 of the GGUF file, so a changed file gets a fresh folder. Hashes are
remembered per (path, size, mtime) in ``hashes.json`` next to the folders, so a large file is not
re-read on every start. A folder is written under a temporary name and renamed when complete, so
two processes converting at once never see a half-written folder.

Example::

    from plait.local_models.llm.gguf_cache import cached_gguf_folder
    folder = cached_gguf_folder("/path/to/SmolLM2-135M-Instruct.Q4_1.gguf")  # slow the first time
    # AutoModelForCausalLM.from_pretrained(folder) now loads in about a second
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from plait.defaults import data_dir

_COMPLETE = "plait-gguf-complete.json"
_lock = threading.Lock()  # one conversion at a time per process (they are memory-hungry)


def gguf_cache_root() -> Path:
    """Where converted GGUF models live."""
    path = data_dir() / "models" / "gguf"
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) so it is computed once per file version."""
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    memo_path = gguf_cache_root() / "hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return str(memo[key])
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    digest = h.hexdigest()
    memo[key] = digest
    _write_json(memo_path, memo)
    return digest


def cached_folder_for(gguf_path: str | os.PathLike[str]) -> Path:
    """The cache folder this GGUF file maps to (it may not exist yet)."""
    p = Path(gguf_path)
    return gguf_cache_root() / f"{p.stem}-{file_sha256(p)[:16]}"


def is_cached(gguf_path: str | os.PathLike[str]) -> bool:
    return (cached_folder_for(gguf_path) / _COMPLETE).exists()


def cached_gguf_folder(gguf_path: str | os.PathLike[str]) -> Path:
    """A transformers folder (config, safetensors weights, tokenizer) for ``gguf_path``.

    Converts on the first call for a given file content; later calls return the folder at once.
    """
    p = Path(gguf_path)
    if not p.is_file():
        raise FileNotFoundError(f"GGUF file not found: {p}. Pass the path of an existing .gguf file.")
    folder = cached_folder_for(p)
    if (folder / _COMPLETE).exists():
        return folder
    with _lock:
        if (folder / _COMPLETE).exists():  # another thread converted it while we waited
            return folder
        _convert(p, folder)
    return folder


def gguf_info(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What was recorded when ``folder`` was converted (source file, hash, matrix types), else None."""
    try:
        return dict(json.loads((Path(folder) / _COMPLETE).read_text()))
    except (OSError, ValueError):
        return None


def is_4bit(folder: str | os.PathLike[str]) -> bool:
    """Whether a converted GGUF stored most of its weight matrices in a 4-bit format (Q4_0, Q4_1, Q4_K)."""
    info = gguf_info(folder) or {}
    types: dict[str, int] | None = info.get("matrix_types")
    source = Path(info.get("gguf_file") or "")
    if types is None and source.is_file():
        # a folder converted by an older plait did not record the types: read them from the GGUF once
        types = _matrix_types(source)
        _write_json(Path(folder) / _COMPLETE, {**info, "matrix_types": types})
    types = types or {}
    return bool(types) and max(types, key=lambda t: types[t]).startswith("Q4")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON file atomically (a reader sees the old or the new file, never half of one)."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _matrix_types(gguf_path: Path) -> dict[str, int]:
    """How many 2-D tensors of each GGUF type (e.g. {"Q4_1": 210, "Q8_0": 1})."""
    import gguf

    counts: dict[str, int] = {}
    for tensor in gguf.GGUFReader(str(gguf_path)).tensors:
        if len(tensor.shape) == 2:
            name = tensor.tensor_type.name
            counts[name] = counts.get(name, 0) + 1
    return counts


def _convert(gguf_path: Path, folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    # A GGUF-loaded model carries a "gguf" quantizer that refuses save_pretrained; the tensors are
    # already dequantized, so the model is an ordinary one once the quantizer is dropped.
    setattr(model, "hf_quantizer", None)  # noqa: B010 (typed as a module attribute by transformers)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "is_quantized", False):
        setattr(model, "is_quantized", False)  # noqa: B010
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        info = {"gguf_file": str(gguf_path.resolve()), "sha256": file_sha256(gguf_path),
                "matrix_types": _matrix_types(gguf_path)}
        (tmp / _COMPLETE).write_text(json.dumps(info, indent=1))
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / _COMPLETE).exists():  # a leftover, incomplete folder: replace it
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
