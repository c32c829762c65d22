"""Local text embeddings with sentence-transformers (the bundled all-MiniLM-L6-v2 by default).

Device and precision:

- ``device="auto"`` picks CUDA when present, else the CPU.
- ``dtype="auto"`` picks float16 on CUDA; on a CPU with native bfloat16 (AVX512-BF16 or AMX) it
  picks bfloat16, else float32. On this project's reference CPU bfloat16 embeds SciFact abstracts
  ~2.5-3x faster than float32 with cosine >= 0.9999 to the float32 vectors, and dense nDCG@10
  within 0.005 (``benchmarks/retrieval_scifact.py --fp32-check`` measures it). Pass
  ``dtype="float32"`` for bit-for-bit float32 vectors.

Fused encoder (``fuse=None``, the default: on for bfloat16 on the CPU). Calls with many texts
(ingestion) run the transformer traced once with ``torch.jit.trace``, frozen, through oneDNN Graph
fusion, which joins the matmuls with their bias, GELU, softmax and layer norms into AMX kernels.
Measured on the reference CPU on MiniLM batches of 32: 1.2-1.6x faster than eager bfloat16 at
64-256 tokens; 1.32x on SciFact's chunks, and the full SciFact ingest went from 83 s to 70 s
(``benchmarks/retrieval_scifact.py``), with dense nDCG@10 0.6686 against 0.6703 in float32.
Lengths are padded up to a multiple of ``fuse_step`` tokens, since oneDNN compiles each new shape
once (~0.1-0.3 s). The trace is checked against the eager model on a padded batch before it is
used; if tracing fails or the check differs, the eager model is used, with a warning.
``torch.jit.enable_onednn_fusion(True)`` is process-wide. Queries and small calls stay eager.

Vectors are L2-normalised, so dot product equals cosine similarity.

Example::

    from plait.local_models.embeddings.sentence_transformer import SentenceTransformerEmbeddings
    emb = SentenceTransformerEmbeddings()          # bundled MiniLM, offline
    emb.embed_query("What is BM25?")[:3]
    emb.count_tokens(["a short text"])             # [5]
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from plait.defaults import default_embeddings as default_embeddings  # made in plait.defaults; re-exported
from plait.defaults import require
from plait.embeddings import Embeddings

_DTYPES = ("auto", "float32", "bfloat16", "float16")


def _one_torch_thread() -> ThreadPoolExecutor:
    """A worker thread whose torch ops run on one CPU thread, for tiny batches (queries).

    A one-query forward pass gains little from several threads, and on a busy machine the threads'
    barriers make it several times slower (measured under load on 2 cores, bfloat16 MiniLM:
    p50 5.6 ms on one thread against 24.6 ms on two, p90 5.8 ms against 488 ms). torch keeps the
    intra-op thread count per thread, so setting it inside the worker leaves every other thread
    as it is. (torch also keeps a process default, which a thread takes on its first torch call;
    setting the worker's count moves it, so it is put back at once, before the worker is used.)
    """
    import torch

    pool = ThreadPoolExecutor(1, thread_name_prefix="plait-embed-1thread")
    before = torch.get_num_threads()

    def one() -> None:
        torch.get_num_threads()  # the thread's first torch call takes the process default; then set it
        torch.set_num_threads(1)

    pool.submit(one).result()
    torch.set_num_threads(before)  # the process default, as it was (this thread's count is unchanged)
    return pool


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}; got {dtype!r}")
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "float16"
    if device == "cpu" and cpu_has_bf16():
        return "bfloat16"
    return "float32"


class SentenceTransformerEmbeddings(Embeddings):
    """Embeddings from a local sentence-transformers model (folder path or hub id).

    Args:
        model: a local folder or hub id; default the bundled all-MiniLM-L6-v2 (never downloads).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``"auto"`` (see the module docstring), ``"float32"``, ``"bfloat16"``, ``"float16"``.
        batch_size: texts per forward pass; texts are sorted by token count first, so padding is
            small. 32 keeps a batch's activations in cache: on 2 cores it embedded ~20% faster than 64.
        normalize: L2-normalise the vectors (cosine similarity = dot product).
        fuse: run large calls through the traced, oneDNN-fused encoder (see the module docstring);
            ``None`` (default) turns it on for bfloat16 on the CPU.
    """

    io_bound = True  # torch releases the GIL while it computes
    #: Batches of at most this many texts (queries) run on one CPU thread; see ``_one_torch_thread``.
    small_batch = 4
    #: Texts tokenized together (and sorted by token count) at a time; bounds the padded token arrays.
    tokenize_block = 1024
    #: Calls with at least this many texts use the fused encoder (when on); fewer stay eager.
    fuse_min_texts = 64
    #: The fused encoder sees lengths padded up to a multiple of this, so it compiles few shapes.
    fuse_step = 16

    def __init__(self, model: str | None = None, *, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 32, normalize: bool = True, fuse: bool | None = None) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}; got {dtype!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model_name = model
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.normalize = normalize
        self.fuse = fuse
        self._model: Any = None
        self._fused: Any = None  # the traced encoder and its input names; False once ruled out
        self._lock = threading.Lock()
        self._one_thread: ThreadPoolExecutor | None = None  # made on the first small CPU call

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbeddings({self.model_name or 'all-MiniLM-L6-v2'!r}, dtype={self.dtype!r})"

    # --- loading ---------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the model now (it loads on first use otherwise)."""
        self._load()

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                require("sentence_transformers", "chroma", "sentence-transformers")
                import torch
                from sentence_transformers import SentenceTransformer

                from plait.defaults import embedding_model_path

                path = self.model_name or embedding_model_path()
                device = resolve_device(self.device)
                dtype = resolve_dtype(self.dtype, device)
                model = SentenceTransformer(path, device=device,
                                            model_kwargs={"dtype": getattr(torch, dtype)})
                model.eval()
                self.resolved: dict[str, Any] = {"model": path, "device": device, "dtype": dtype}
                self._model = model
        return self._model

    def _fused_encoder(self, model: Any) -> tuple[Any, list[str]] | None:
        """The traced, frozen, oneDNN-fused transformer and its input names, or None (use eager)."""
        if self._fused is None:
            with self._lock:
                if self._fused is None:
                    self._fused = self._trace(model) or False
        return self._fused or None

    def _trace(self, model: Any) -> tuple[Any, list[str]] | None:
        cpu = self.resolved["device"] == "cpu"
        on = cpu and (self.fuse if self.fuse is not None else self.resolved["dtype"] == "bfloat16")
        encoder = getattr(model[0], "auto_model", None) if len(model) else None
        if not on or encoder is None:
            return None
        import warnings

        import torch

        class _Positional(torch.nn.Module):
            """The transformer called positionally, giving the last hidden states (what tracing needs)."""

            def __init__(self, encoder: Any, names: list[str]) -> None:
                super().__init__()
                self.encoder, self.names = encoder, names

            def forward(self, *args: Any) -> Any:
                return self.encoder(**dict(zip(self.names, args, strict=True)), return_dict=False)[0]

        # Two lengths, so the traced graph applies the padding mask (it is traced, not branched on).
        example = model.preprocess(["a padded example, so that the trace masks padding", "short"])
        names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in example]
        if names[:2] != ["input_ids", "attention_mask"] or set(example) - set(names) - {"modality"}:
            return None  # not a plain text encoder
        try:
            torch.jit.enable_onednn_fusion(True)
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer notes
                positional = _Positional(encoder, names).eval()
                traced = torch.jit.freeze(torch.jit.trace(positional, tuple(example[k] for k in names),
                                                          strict=False).eval())
                check = model.preprocess(["The fused encoder must agree with the eager one.", "Padding too.",
                                          "x " * 40] * 3)
                fused = self._fused_forward(model, (traced, names), check)
                eager = model(check)["sentence_embedding"]
            agree = float(torch.nn.functional.cosine_similarity(fused.float(), eager.float()).min())
            if agree < 0.999:
                raise RuntimeError(f"it disagrees with the eager model (cosine {agree:.4f})")
        except Exception as e:  # any model TorchScript cannot trace: stay eager
            warnings.warn(f"Embedding without the fused encoder ({type(e).__name__}: {e}); pass fuse=False "
                          "to skip trying", RuntimeWarning, stacklevel=4)
            return None
        self.resolved["fused"] = True
        return traced, names

    def _fused_forward(self, model: Any, fused: tuple[Any, list[str]], features: dict[str, Any]) -> Any:
        """Sentence embeddings of one batch through the traced encoder, then the model's pooling."""
        import torch

        traced, names = fused
        width = features["input_ids"].shape[1]
        pad = -width % self.fuse_step
        args = [torch.nn.functional.pad(features[k], (0, pad)) if pad else features[k] for k in names]
        out = {**features, "token_embeddings": traced(*args)[:, :width]}
        for module in list(model)[1:]:  # pooling (and normalising) as the model does it
            out = module(out)
        return out["sentence_embedding"]

    @property
    def tokenizer(self) -> Any:
        """The model's (fast) tokenizer."""
        return self._load().tokenizer

    @property
    def max_tokens(self) -> int:  # type: ignore[override]
        """The model's max sequence length, special tokens included."""
        return int(self._load().max_seq_length)

    # --- the interface ---------------------------------------------------------------------------
    def embed_array(self, texts: Sequence[str]) -> Any:
        """The vectors as one float32 numpy array of shape (len(texts), dim)."""
        import numpy as np

        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"Text #{i} to embed is a {type(t).__name__}, not a string")
        model = self._load()
        if not texts:
            dim = model.get_embedding_dimension()
            return np.zeros((0, dim), dtype=np.float32)
        import torch

        fused = self._fused_encoder(model) if len(texts) >= self.fuse_min_texts and self.fuse is not False else None
        if len(texts) <= self.small_batch and str(model.device) == "cpu" and torch.get_num_threads() > 1:
            vecs = self._on_one_thread(self._encode, model, texts, fused)
        else:
            vecs = self._encode(model, texts, fused)
        if self.normalize:  # in float32, so that low-precision runs still give unit vectors
            vecs = torch.nn.functional.normalize(vecs, p=2, dim=1)
        return vecs.cpu().numpy().astype(np.float32, copy=False)

    def _encode(self, model: Any, texts: list[str], fused: tuple[Any, list[str]] | None) -> Any:
        """The float32 sentence embeddings of ``texts`` (not normalised), as a torch tensor."""
        import torch

        out = torch.empty((len(texts), model.get_embedding_dimension()), dtype=torch.float32)
        with torch.inference_mode():
            for first in range(0, len(texts), self.tokenize_block):
                block = texts[first:first + self.tokenize_block]
                for idx, features in self._batches(model, block):
                    features = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in features.items()}
                    vecs = (self._fused_forward(model, fused, features) if fused
                            else model(features)["sentence_embedding"])
                    out[[first + i for i in idx]] = vecs.float().cpu()
        return out

    def _on_one_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on this object's one-torch-thread worker (see ``_one_torch_thread``)."""
        if self._one_thread is None:
            with self._lock:
                if self._one_thread is None:
                    self._one_thread = _one_torch_thread()
        ctx = contextvars.copy_context()
        return self._one_thread.submit(ctx.run, fn, *args).result()

    def _batches(self, model: Any, texts: list[str]) -> Iterator[tuple[list[int], dict[str, Any]]]:
        """(positions, model features) per batch, longest texts first, so each batch pads little.

        The texts are tokenized once, together (the model's own preprocessing, which truncates to
        max_tokens), then sorted by token count and cut into batches, each trimmed to its longest
        text. Sorting by token count, not characters, matters: on SciFact chunks sorting by
        characters left 20% of the tokens as padding, by token count 2%.
        """
        features = model.preprocess(texts)
        mask = features.get("attention_mask")
        if mask is None or getattr(model.tokenizer, "padding_side", "right") != "right":
            # no token counts to sort by: sort by characters and tokenize batch by batch
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                yield idx, model.preprocess([texts[i] for i in idx])
            return
        lengths = mask.sum(dim=1)
        order = sorted(range(len(texts)), key=lambda i: -int(lengths[i]))
        width = mask.shape[1]
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            longest = int(lengths[idx[0]])
            batch: dict[str, Any] = {}
            for key, value in features.items():
                if hasattr(value, "shape") and value.dim() >= 1 and value.shape[0] == len(texts):
                    value = value[idx]
                    if value.dim() == 2 and value.shape[1] == width:  # per token: drop the padding
                        value = value[:, :longest]
                batch[key] = value
            yield idx, batch

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_array([text])[0].tolist()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, special tokens included, without truncation."""
        enc = self.tokenizer(list(texts), add_special_tokens=True, truncation=False,
                             return_attention_mask=False, return_token_type_ids=False)
        return [len(ids) for ids in enc["input_ids"]]
