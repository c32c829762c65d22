"""A chat model for GGUF files whose forward pass runs in llama.cpp (``llama-cpp-python``).

``LlamaCppChatModel(path)`` is :class:`~plait.local_models.llm.transformers_chat.TransformersChatModel`
with llama.cpp's kernels in place of plait's decoder: the same chat template, context policy,
sampling (``temperature``, ``top_p``, ``top_k``, ``seed``, penalties), stop sequences, tools,
``response_format``, ``guided_regex`` and ``guided_choice`` (the grammar masks llama.cpp's logits
exactly as it masks plait's), streaming and usage. llama.cpp does one thing here: turn the next
tokens into the logits of the last one, through its own KV cache. So a user who has llama.cpp gets
its speed, and plait's chains, tools and constrained decoding on top.

The tokenizer and chat template come from the GGUF's cached transformers folder
(:mod:`plait.local_models.llm.gguf_cache`; the bundled model's is already there after its first
use). ``n_threads`` defaults to torch's thread count, the same as plait's own decoder, so the two
compare fairly. ``n_gpu_layers=-1`` offloads every layer when llama.cpp was built with CUDA.

Install: ``pip install 'plait[llamacpp]'`` compiles llama.cpp (minutes); ``make bench-llamacpp``
builds it with the flags that work on this project's machines into ``.bench/llamacpp``.

Example::

    from plait.local_models.llm.llamacpp_chat import LlamaCppChatModel
    model = LlamaCppChatModel()                      # the bundled SmolLM2 GGUF
    model.invoke("What is the capital of France?").content
    # or from a spec: chat_model_from_spec("llamacpp:/models/qwen2.5-0.5b-instruct-q4_k_m.gguf")
"""

from __future__ import annotations

import os
from typing import Any

from plait.defaults import require, smollm2_gguf_path
from plait.local_models.llm.engine import Engine
from plait.local_models.llm.transformers_chat import TransformersChatModel


class LlamaCppChatModel(TransformersChatModel):
    """A GGUF chat model decoded by llama.cpp, with plait's sampling, grammar and tools on top.

    Args:
        model: a ``.gguf`` file (default: the bundled SmolLM2-135M-Instruct Q4_1).
        n_threads: llama.cpp's threads (default: ``torch.get_num_threads()``).
        n_gpu_layers: layers to offload to a GPU (``-1``: all; needs a CUDA build of llama.cpp).
        context_window, truncation, **options: as :class:`TransformersChatModel`.
    """

    supports_n = False  # the llama.cpp context here decodes one sequence

    def __init__(self, model: str | os.PathLike[str] | None = None, *, n_threads: int | None = None,
                 n_gpu_layers: int = 0, **kwargs: Any) -> None:
        path = os.fspath(model) if model is not None else smollm2_gguf_path()
        if not path.endswith(".gguf"):
            raise ValueError(f"llama.cpp runs GGUF files; {path!r} is not one. For a transformers folder or "
                             "hub id use the 'local:' spec (TransformersChatModel)")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No GGUF file at {path}: pass the path of a .gguf file")
        super().__init__(path, device="cpu", **kwargs)
        self.n_threads, self.n_gpu_layers = n_threads, n_gpu_layers
        self._engine = _LlamaCppEngine(path, n_threads, n_gpu_layers)

    def __repr__(self) -> str:
        return f"LlamaCppChatModel({self.spec!r}, n_threads={self.n_threads}, n_gpu_layers={self.n_gpu_layers})"


class _LlamaCppEngine(Engine):
    """The engine of :class:`TransformersChatModel` with a :class:`LlamaCppDecoder`."""

    def __init__(self, spec: str, n_threads: int | None, n_gpu_layers: int) -> None:
        super().__init__(spec, "cpu", "auto", "none")
        self.n_threads, self.n_gpu_layers = n_threads, n_gpu_layers

    def _load(self) -> None:
        require("llama_cpp", "llamacpp", "llama-cpp-python")
        from plait.local_models.llm.gguf_cache import cached_gguf_folder

        self._load_tokenizer_and_config(str(cached_gguf_folder(self.spec)))
        self.decoder = LlamaCppDecoder(self.spec, self.window, self.n_threads, self.n_gpu_layers)
        self.device, self.quantized = self.decoder.device, True


class LlamaCppDecoder:
    """plait's decoder interface (``start``, ``step``) over a ``llama_cpp.Llama`` context."""

    def __init__(self, path: str, n_ctx: int, n_threads: int | None = None, n_gpu_layers: int = 0) -> None:
        import torch
        from llama_cpp import Llama

        self.llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads or torch.get_num_threads(),
                         n_gpu_layers=n_gpu_layers, logits_all=False, verbose=False)
        self.n_vocab = self.llm.n_vocab()
        self.device = torch.device("cpu")

    def start(self, max_len: int) -> None:
        """Begin a new sequence (llama.cpp drops the old one's cache entries on the next step)."""
        if max_len > self.llm.n_ctx():
            raise ValueError(f"A sequence of {max_len} tokens is longer than the llama.cpp context "
                             f"({self.llm.n_ctx()} tokens).")
        self.llm.reset()

    def step(self, ids: Any) -> Any:
        """Feed token ids (1-D) at the current position; returns the logits of the last one (float32)."""
        import numpy as np
        import torch

        self.llm.eval([int(t) for t in ids.tolist()])
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.n_vocab,))
        return torch.from_numpy(logits.copy())
