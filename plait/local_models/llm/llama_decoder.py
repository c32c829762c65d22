"""A lean forward pass for Llama-family decoders, with a preallocated KV cache.

transformers' ``generate`` spends most of a small model's decode step in Python: module calls,
cache objects, logits processors. For the architectures listed in :data:`SUPPORTED` this module
reads the weights out of the transformers model once and runs the same maths as plain tensor ops:
q/k/v and gate/up projections fused into one matmul each, rotary tables precomputed by the
model's own rotary embedding (so every rope scaling variant stays right), a KV cache allocated once
per request, and logits only for the last position. ``tests/local_models`` checks the logits match
transformers' on random Llama, Mistral and Qwen2 configs.

Weights: by default the projections run in the model's dtype. With ``quantize="int4"`` (CPU only)
they are packed as 4-bit integers in groups of 32 with a scale and zero point per group, and run
through torch's int4 weight-only kernel in bfloat16; the output projection (``lm_head``) becomes
8-bit integers in groups of 32 (GGUF's Q8_0 layout, also exact for a Q8_0 source), run by a small
compiled int8 kernel where it builds (:mod:`~plait.local_models.llm.q8_kernel`; the layers are in
:mod:`~plait.local_models.llm.linear`). Re-packing a GGUF Q4_1 model this way is exact: Q4_1 also stores 4-bit
values in groups of 32 with a scale and a minimum, and each group's minimum and maximum are among
its values, so they give back the same scale, minimum and integers. For other sources it is a
lossy compression, like llama.cpp's Q4_1.

The prepared tensors (fused, packed, rotary tables) can be written to one safetensors file with
:meth:`LlamaDecoder.save` and read back with :meth:`LlamaDecoder.load`, without transformers. What
is promised: the file holds the prepared tensors bit for bit (same names, dtypes, shapes, values),
and a loaded decoder gives the same logits, bit for bit, as the one that was saved, for the same
tokens on the same machine and thread count.

LoRA adapters beside 4-bit weights: re-packing merged weights (base + adapter) as int4 erases most
of an adapter, since the base weights sit exactly on the 4-bit grid and a small update rounds back
to them (measured on SmolLM2 with a citation adapter: answer loss 0.98 base, 0.53 adapted in
float32, 0.94 adapted after merging and re-packing). So with ``lora=`` the base weights are packed
as they are and each projection adds its low-rank update, ``(x @ A.T) @ B.T`` with the fused
projections' A stacked and B block-diagonal (:class:`~plait.local_models.llm.low_rank.LowRank`): a few small matmuls per layer.

Other architectures run through :class:`HFDecoder`, which wraps the transformers model with a
``DynamicCache``; both expose ``start(max_len)``, ``step(ids) -> logits``, and for ``n`` choices of one
prompt ``fork(rows)`` (after the prompt, one cache row per sequence; ``step`` then takes ``(rows, t)``
ids) and ``keep(rows)`` (drop finished sequences' rows).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from plait.local_models.llm.linear import GROUP, DenseLinear, Int4Linear, Int8Linear, int4_available
from plait.local_models.llm.low_rank import LowRank, stacked

if TYPE_CHECKING:
    import torch

#: model_type values whose attention/MLP is exactly Llama's (RMSNorm, rope, GQA, SwiGLU).
SUPPORTED = ("llama", "mistral", "qwen2")


def supports(config: Any) -> bool:
    """Whether the lean decoder reproduces this config's forward pass."""
    if getattr(config, "model_type", None) not in SUPPORTED:
        return False
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "mlp_bias", False):
        return False
    if getattr(config, "pretraining_tp", 1) != 1:
        return False
    # Sliding-window attention (Mistral, some Qwen2) is only equal to full attention within the window.
    return not (getattr(config, "use_sliding_window", True) and getattr(config, "sliding_window", None))


def can_quantize(config: Any) -> bool:
    """Whether ``quantize="int4"`` applies: the kernel exists and every input size is a multiple of 32."""
    sizes = [config.hidden_size, config.intermediate_size]
    return int4_available() and all(s % GROUP == 0 for s in sizes)


class LlamaDecoder:
    """Decode with a transformers Llama-family model's weights, without its module machinery.

    ``LlamaDecoder(model)`` reads the weights out of a transformers model; :meth:`save` writes the
    prepared (fused, packed) tensors to one safetensors file and :meth:`load` reads them back without
    transformers, which is how a cached GGUF model starts quickly.

    Float (unquantized) weights are kept at 64-byte-aligned addresses, copied there when they are not:
    MKL's matrix-vector product (every one-token step, and the logits of the last position) rounds
    differently by the weight's address. transformers' memory-mapped parameters often sit 8 bytes
    past a 16-byte boundary, and a loaded file's tensors wherever its header ends; unaligned, the
    same weights gave logits up to 1.8e-7 apart (2-3 float32 ulps) on a tiny Llama. torch's int4
    kernel gives the same bits at any address (measured), so packed weights stay memory-mapped.
    """

    def __init__(self, model: Any, quantize: str | None = None,
                 lora: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        import torch

        if quantize not in (None, "int4"):
            raise ValueError(f"quantize must be None or 'int4', not {quantize!r}")
        if quantize and model.device.type != "cpu":
            raise ValueError("quantize='int4' runs on the CPU only; on a GPU use dtype='bfloat16'")
        cfg = model.config
        n_heads = cfg.num_attention_heads
        # Quantized weights compute in bfloat16 (what the int4/int8 kernels take).
        dtype = torch.bfloat16 if quantize else model.dtype
        self.spec = {
            "n_heads": n_heads, "n_kv": getattr(cfg, "num_key_value_heads", None) or n_heads,
            "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads, "eps": cfg.rms_norm_eps,
            "max_positions": cfg.max_position_embeddings, "n_layers": len(model.model.layers),
            "quantize": quantize, "dtype": str(dtype).removeprefix("torch."),
        }
        inner = model.model

        def cast(w: torch.Tensor) -> torch.Tensor:
            return w.detach().to(dtype)

        def linear(weight: torch.Tensor, bias: torch.Tensor | None = None, head: bool = False) -> Any:
            if quantize:
                return Int8Linear(weight) if head else Int4Linear(weight, bias)
            return DenseLinear(cast(weight), None if bias is None else cast(bias))

        t: dict[str, torch.Tensor] = {"embed": cast(inner.embed_tokens.weight), "norm": cast(inner.norm.weight)}
        with torch.no_grad():
            # rotary tables from the model's own rotary embedding, so every rope scaling variant stays right
            positions = torch.arange(cfg.max_position_embeddings, device=model.device)[None]
            cos, sin = inner.rotary_emb(torch.zeros(1, dtype=dtype, device=model.device), positions)
            t["cos"], t["sin"] = cos[0].to(dtype), sin[0].to(dtype)
            t.update(linear(model.lm_head.weight, head=True).tensors("lm_head"))
            for i, layer in enumerate(inner.layers):
                attn, mlp, p = layer.self_attn, layer.mlp, f"layers.{i}"
                qkv_bias = None
                if attn.q_proj.bias is not None:
                    qkv_bias = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
                qkv = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
                t[f"{p}.in_norm"] = cast(layer.input_layernorm.weight)
                t[f"{p}.post_norm"] = cast(layer.post_attention_layernorm.weight)
                t.update(linear(qkv, qkv_bias).tensors(f"{p}.qkv"))
                t.update(linear(attn.o_proj.weight, attn.o_proj.bias).tensors(f"{p}.o"))
                t.update(linear(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])).tensors(f"{p}.gate_up"))
                t.update(linear(mlp.down_proj.weight).tensors(f"{p}.down"))
                if lora:  # an adapter's updates beside the packed weights (see the module docstring)
                    m = f"model.layers.{i}"
                    fused = {"qkv": ([f"{m}.self_attn.{x}_proj" for x in "qkv"],
                                     [attn.q_proj.weight.shape[0], attn.k_proj.weight.shape[0],
                                      attn.v_proj.weight.shape[0]]),
                             "o": ([f"{m}.self_attn.o_proj"], [attn.o_proj.weight.shape[0]]),
                             "gate_up": ([f"{m}.mlp.gate_proj", f"{m}.mlp.up_proj"],
                                         [mlp.gate_proj.weight.shape[0], mlp.up_proj.weight.shape[0]]),
                             "down": ([f"{m}.mlp.down_proj"], [mlp.down_proj.weight.shape[0]])}
                    for short, (names, sizes) in fused.items():
                        if (ab := stacked(lora, names, sizes)) is not None:
                            t[f"{p}.{short}.lora_a"], t[f"{p}.{short}.lora_b"] = ab
        self._setup(self.spec, t)

    # --- saving and loading the prepared tensors -------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the prepared tensors and the shape facts to ``path`` (safetensors, written atomically)."""
        from safetensors.torch import save_file

        tmp = f"{path}.{os.getpid()}.tmp"
        save_file({k: v.contiguous() for k, v in self.tensors.items()}, tmp,
                  metadata={"plait_llama_decoder": json.dumps(self.spec)})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LlamaDecoder:
        """A decoder from a file written by :meth:`save` (memory-mapped; no transformers needed)."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            spec = json.loads(f.metadata()["plait_llama_decoder"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        self = cls.__new__(cls)
        self._setup(spec, tensors)
        return self

    def _setup(self, spec: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
        import torch

        if not spec["quantize"]:
            t = {k: _aligned(v) for k, v in t.items()}
        self.spec, self.tensors = spec, t
        self.n_heads, self.n_kv, self.head_dim = spec["n_heads"], spec["n_kv"], spec["head_dim"]
        self.eps, self.max_positions, self.quantize = spec["eps"], spec["max_positions"], spec["quantize"]
        self.scale = self.head_dim ** -0.5
        self.dtype = getattr(torch, spec["dtype"])
        self.embed, self.norm = t["embed"], t["norm"]
        self.device = self.embed.device
        half = self.head_dim // 2
        # rotate_half(x) * sin == roll(x, half) * sin_signed, with the first half of sin negated
        self._cos, self._sin = t["cos"], torch.cat([-t["sin"][:, :half], t["sin"][:, half:]], dim=-1)
        kind: Any = Int4Linear if spec["quantize"] else DenseLinear
        self.lm_head = (Int8Linear if spec["quantize"] else DenseLinear).from_tensors(t, "lm_head")
        self.norm2 = torch.cat([self.norm, self.norm])
        def proj(name: str) -> Any:
            return LowRank.wrap(kind.from_tensors(t, name), t, name)

        self.layers = [(torch.cat([t[f"layers.{i}.in_norm"]] * 2), proj(f"layers.{i}.qkv"), proj(f"layers.{i}.o"),
                        torch.cat([t[f"layers.{i}.post_norm"]] * 2), proj(f"layers.{i}.gate_up"),
                        proj(f"layers.{i}.down"))
                       for i in range(spec["n_layers"])]
        # the KV cache of one sequence (kept between requests), and the one in use (one, or forked rows)
        self._one: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.kv_cache = self._one
        self.pos = 0

    # --- decoding --------------------------------------------------------------------------------------
    def _attention_dtype(self) -> Any:
        """float32 on a CPU: torch's CPU attention kernel is ~6x faster on float32 than on bfloat16 for one
        new token (16 vs 100 us a layer for SmolLM2), and the cache is small; else the weights' dtype."""
        import torch

        return torch.float32 if self.device.type == "cpu" else self.dtype

    def start(self, max_len: int) -> None:
        """Begin a new sequence of at most ``max_len`` tokens (allocates the KV cache)."""
        import torch

        if max_len > self._cos.shape[0]:
            raise ValueError(f"A sequence of {max_len} tokens is longer than this model's "
                             f"{self._cos.shape[0]} positions (max_position_embeddings).")
        if not self._one or self._one[0][0].shape[2] < max_len:
            # per layer, keys and values side by side: (1, 2 * n_kv, max_len, head_dim), written by one copy;
            # plus views of the key and value halves, so a step slices them without re-deriving them
            shape = (len(self.layers), 2 * self.n_kv, max_len, self.head_dim)
            cache = torch.empty(shape, dtype=self._attention_dtype(), device=self.device)
            self._one = [(kv, kv[:, :self.n_kv], kv[:, self.n_kv:]) for kv in cache.split(1)]
        self.kv_cache, self.pos, self.max_len = self._one, 0, max_len

    def fork(self, rows: int) -> None:
        """Go on as ``rows`` sequences from here (``n`` choices of one prompt): the cache so far is
        copied into each row, and :meth:`step` then takes ids of shape ``(rows, t)``."""
        import torch

        one, pos = self._one, self.pos
        shape = (len(self.layers), rows, 2 * self.n_kv, self.max_len, self.head_dim)
        cache = torch.empty(shape, dtype=one[0][0].dtype, device=self.device)
        for kv, (kv1, _, _) in zip(cache, one, strict=True):
            kv[:, :, :pos] = kv1[:, :, :pos]  # broadcast over the rows
        self.kv_cache = [(kv, kv[:, :self.n_kv], kv[:, self.n_kv:]) for kv in cache]

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (ascending) of a forked cache, moved to the front: finished sequences
        stop costing anything, and later steps take ``len(rows)`` rows."""
        for j, r in enumerate(rows):
            if j != r:  # r > j, and rows after r are still in place
                for kv, _, _ in self.kv_cache:
                    kv[j, :, :self.pos] = kv[r, :, :self.pos]
        b = len(rows)
        self.kv_cache = [(kv[:b], kv[:b, :self.n_kv], kv[:b, self.n_kv:]) for kv, _, _ in self.kv_cache]

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed token ids at the current position, shape ``(t,)``, or ``(rows, t)`` after :meth:`fork`;
        returns the logits of the last position (float32), shape ``(vocab,)`` or ``(rows, vocab)``."""
        import torch
        import torch.nn.functional as F

        b, t = (1, ids.shape[0]) if ids.dim() == 1 else ids.shape
        start, end = self.pos, self.pos + t
        nh, nkv, hd, eps = self.n_heads, self.n_kv, self.head_dim, self.eps
        # 1. rotary tables for these positions, for all q/k/v heads at once: (1, heads, t, hd); the value
        #    heads get cos 1 and sin 0, so they pass through unrotated and q, k, v need no splitting first
        cos, sin = self._cos[start:end], self._sin[start:end]
        cos = torch.cat([cos.expand(nh + nkv, t, hd), torch.ones_like(cos).expand(nkv, t, hd)])[None]
        sin = torch.cat([sin.expand(nh + nkv, t, hd), torch.zeros_like(sin).expand(nkv, t, hd)])[None]
        half = hd // 2
        # 2. token embeddings, one row per token: (b * t, d)
        x = F.embedding(ids, self.embed).view(b * t, -1)
        causal = t > 1
        mask = None
        if causal and start > 0:  # continuing a sequence with several tokens: explicit offset mask
            mask = torch.ones(t, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
            causal = False
        for (w_in, qkv_proj, o_proj, w_post, gate_up_proj, down_proj), (kv, keys, values) in zip(
                self.layers, self.kv_cache, strict=False):
            # 3. attention: fused q/k/v projection and rope, new keys and values into the cache in one copy
            h = qkv_proj(_rms_norm(x, w_in, eps)).view(b, t, nh + 2 * nkv, hd).transpose(1, 2)
            h = torch.addcmul(h * cos, h.roll(half, -1), sin).to(keys.dtype)
            kv[:, :, start:end] = h[:, nh:]
            # each k/v head serves nh // nkv query heads. 4-D tensors (rows, heads, t, hd): torch's fused
            # CPU attention kernel (3-D inputs take the slow reference path).
            a = F.scaled_dot_product_attention(h[:, :nh], keys[:, :, :end], values[:, :, :end], attn_mask=mask,
                                               is_causal=causal, enable_gqa=nkv != nh)
            x = x + o_proj(a.transpose(1, 2).reshape(b * t, nh * hd).to(x.dtype))
            # 4. SwiGLU MLP: fused gate/up projection
            gate, up = gate_up_proj(_rms_norm(x, w_post, eps)).chunk(2, dim=-1)
            x = x + down_proj(F.silu(gate) * up)
        self.pos = end
        # 5. final norm and logits for the last position (of each row) only
        if ids.dim() == 1:
            return self.lm_head(_rms_norm(x[-1:], self.norm2, eps))[0].float()
        return self.lm_head(_rms_norm(x.view(b, t, -1)[:, -1], self.norm2, eps)).float()


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when it starts on a 64-byte boundary (as torch's own CPU allocations do), else a copy that does."""
    return t if t.data_ptr() % 64 == 0 else t.clone()


def _rms_norm(x: torch.Tensor, weight2: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm of ``x`` (last dim d) with ``weight2`` = the weight repeated twice (length 2d).

    A layer norm of ``[x, -x]`` is an RMS norm of ``x``: the mean is 0 and the variance is mean(x²).
    torch's layer norm is one fused kernel, its RMS norm a composite of ~8 ops (16 µs against 9 µs
    a call at SmolLM2's size, 61 calls a token); the results agree to the bit on bfloat16 here.
    """
    import torch
    import torch.nn.functional as F

    d = x.shape[-1]
    return F.layer_norm(torch.cat([x, -x], -1), (2 * d,), weight2, None, eps)[..., :d].contiguous()


class HFDecoder:
    """The same ``start``/``step`` interface over any transformers causal LM, with a DynamicCache."""

    def __init__(self, model: Any) -> None:
        import inspect

        self.model = model
        self.device = model.device
        self.cache: Any = None
        # transformers 5.x renames ``past_key_values`` to ``cache``; older and remote-code models use the old name.
        self.cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.pos = 0

    def start(self, max_len: int) -> None:
        from transformers import DynamicCache

        self.cache = DynamicCache(config=self.model.config)
        self.pos = 0

    def fork(self, rows: int) -> None:
        self.cache.batch_repeat_interleave(rows)

    def keep(self, rows: list[int]) -> None:
        import torch

        self.cache.batch_select_indices(torch.tensor(rows, device=self.device))

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        import torch

        batch = ids if ids.dim() == 2 else ids[None]
        t = batch.shape[1]
        positions = torch.arange(self.pos, self.pos + t, device=self.device)[None].expand(batch.shape[0], t)
        out = self.model(input_ids=batch, use_cache=True, position_ids=positions, logits_to_keep=1,
                         **{self.cache_arg: self.cache})  # the cache object fills up in place
        self.pos += t
        logits = out.logits[:, -1].float()
        return logits if ids.dim() == 2 else logits[0]
