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
8-bit integers in groups of 32 (GGUF's Q8_0 layout, also exact for a Q8_0 source). Re-packing a GGUF Q4_1 model this way is exact: Q4_1 also stores 4-bit
values in groups of 32 with a scale and a minimum, and each group's minimum and maximum are among
its values, so they give back the same scale, minimum and integers. For other sources it is a
lossy compression, like llama.cpp's Q4_1.

Other architectures run through :class:`HFDecoder`, which wraps the transformers model with a
``DynamicCache``; both expose ``start(max_len)`` and ``step(ids) -> logits``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


GROUP = 32


def int4_available() -> bool:
    import torch

    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and hasattr(torch.ops.aten, "_convert_weight_to_int4pack_for_cpu")


class Int4Linear:
    """``y = x @ W.T`` with W packed as 4-bit integers (groups of 32 along the input, scale + zero each)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        import torch

        self.bias = None if bias is None else bias.detach().to(torch.bfloat16)
        n, k = weight.shape
        groups = weight.detach().float().reshape(n, k // GROUP, GROUP)
        low, high = groups.amin(-1), groups.amax(-1)
        scale = ((high - low) / 15).clamp(min=1e-10)
        q = ((groups - low[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32).reshape(n, k)
        # torch's kernel computes (q - 8) * scale + zero, so zero is the group's minimum plus 8 steps.
        self.packed, self.scale_zero = self.pack(q, scale, low + 8 * scale)

    @staticmethod
    def pack(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pack integers 0..15 of shape (n, k) with per-group (n, k/32) scales and zeros for the kernel."""
        import torch

        scale_zero = torch.stack([scale, zero], -1).transpose(0, 1).contiguous().to(torch.bfloat16)
        return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 1), scale_zero

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.packed, GROUP, self.scale_zero)
        return y if self.bias is None else y + self.bias


class Int8Linear:
    """``y = x @ W.T`` with W as 8-bit integers in groups of 32 (one scale each), like GGUF's Q8_0.

    torch has no grouped int8 kernel, so each 8-bit value ``q`` is split as ``16 * high + low`` with
    ``low`` in 0..15 and ``high`` in -8..7, and the product is two int4 matmuls that add up exactly.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        import torch

        n, k = weight.shape
        groups = weight.detach().float().reshape(n, k // GROUP, GROUP)
        scale = (groups.abs().amax(-1) / 127).clamp(min=1e-10).to(torch.bfloat16).float()
        q = (groups / scale[..., None]).round().clamp(-127, 127).to(torch.int32).reshape(n, k)
        low, high = q & 15, (q >> 4) + 8  # q = 16 * (high - 8) + low
        # (high - 8) * 16s + 0  and  (low - 8) * s + 8s
        self.high = Int4Linear.pack(high, 16 * scale, torch.zeros_like(scale))
        self.low = Int4Linear.pack(low, scale, 8 * scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        mm = torch.ops.aten._weight_int4pack_mm_for_cpu
        return mm(x, self.high[0], GROUP, self.high[1]) + mm(x, self.low[0], GROUP, self.low[1])


class DenseLinear:
    """``y = x @ W.T + b`` in the model's dtype."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.weight, self.bias = weight, bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.linear(x, self.weight, self.bias)


def can_quantize(config: Any) -> bool:
    """Whether ``quantize="int4"`` applies: the kernel exists and every input size is a multiple of 32."""
    sizes = [config.hidden_size, config.intermediate_size]
    return int4_available() and all(s % GROUP == 0 for s in sizes)


class LlamaDecoder:
    """Decode with a transformers Llama-family model's weights, without its module machinery."""

    def __init__(self, model: Any, quantize: str | None = None) -> None:
        import torch

        if quantize not in (None, "int4"):
            raise ValueError(f"quantize must be None or 'int4', not {quantize!r}")
        if quantize and model.device.type != "cpu":
            raise ValueError("quantize='int4' runs on the CPU only; on a GPU use dtype='bfloat16'")
        cfg = model.config
        self.config = cfg
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps = cfg.rms_norm_eps
        self.scale = self.head_dim ** -0.5
        self.max_positions = cfg.max_position_embeddings
        self.device = model.device
        # Quantized weights compute in bfloat16 (what the int4/int8 kernels take).
        self.dtype = torch.bfloat16 if quantize else model.dtype
        self.quantize = quantize
        inner = model.model
        self.rotary = inner.rotary_emb

        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(self.dtype)

        def linear(weight: torch.Tensor, bias: torch.Tensor | None = None, head: bool = False) -> Any:
            if quantize:
                return Int8Linear(weight) if head else Int4Linear(weight, bias)
            return DenseLinear(cast(weight), None if bias is None else cast(bias))

        self.embed = inner.embed_tokens.weight.detach().to(self.dtype)
        self.norm = cast(inner.norm.weight)
        self.lm_head = linear(model.lm_head.weight, head=True)
        with torch.no_grad():
            self.layers = []
            for layer in inner.layers:
                attn, mlp = layer.self_attn, layer.mlp
                qkv_bias = None
                if attn.q_proj.bias is not None:
                    qkv_bias = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
                self.layers.append((
                    cast(layer.input_layernorm.weight),
                    linear(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]), qkv_bias),
                    linear(attn.o_proj.weight, attn.o_proj.bias),
                    cast(layer.post_attention_layernorm.weight),
                    linear(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])),
                    linear(mlp.down_proj.weight),
                ))
        self._cos: torch.Tensor | None = None
        self._sin: torch.Tensor | None = None
        self.k_cache: torch.Tensor | None = None
        self.v_cache: torch.Tensor | None = None
        self.pos = 0

    def _rope_tables(self, length: int) -> None:
        import torch

        if self._cos is not None and self._cos.shape[0] >= length:
            return
        length = min(max(length, 256), max(self.max_positions, length))
        positions = torch.arange(length, device=self.device)[None]
        probe = torch.zeros(1, dtype=self.dtype, device=self.device)
        cos, sin = self.rotary(probe, positions)
        self._cos, self._sin = cos[0], sin[0]  # (length, head_dim)

    def start(self, max_len: int) -> None:
        """Begin a new sequence of at most ``max_len`` tokens (allocates the KV cache)."""
        import torch

        self._rope_tables(max_len)
        shape = (len(self.layers), self.n_kv, max_len, self.head_dim)
        if self.k_cache is None or self.k_cache.shape[2] < max_len:
            self.k_cache = torch.empty(shape, dtype=self.dtype, device=self.device)
            self.v_cache = torch.empty(shape, dtype=self.dtype, device=self.device)
        self.pos = 0

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        # torch's fused kernel normalises in float32 inside, like transformers' LlamaRMSNorm.
        return F.rms_norm(x, weight.shape, weight, self.eps)

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed token ids (1-D) at the current position; returns the logits of the last one (float32)."""
        import torch
        import torch.nn.functional as F

        assert self.k_cache is not None and self.v_cache is not None and self._cos is not None
        assert self._sin is not None
        t = ids.shape[0]
        start, end = self.pos, self.pos + t
        nh, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        # 1. rotary tables for these positions, shaped (1, t, hd) to broadcast over heads
        cos, sin = self._cos[start:end][None], self._sin[start:end][None]
        half = hd // 2
        # 2. token embeddings
        x = F.embedding(ids, self.embed)
        causal = t > 1
        mask = None
        if causal and start > 0:  # continuing a sequence with several tokens: explicit offset mask
            mask = torch.ones(t, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
            causal = False
        group = nh // nkv
        for i, (w_in, qkv_proj, o_proj, w_post, gate_up_proj, down_proj) in enumerate(self.layers):
            # 3. attention: fused q/k/v projection, rope on q and k together, k/v into the cache
            h = qkv_proj(self._rms(x, w_in))
            qk = h[:, :(nh + nkv) * hd].view(t, nh + nkv, hd).transpose(0, 1)
            qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), dim=-1) * sin
            q = qk[:nh]
            self.k_cache[i, :, start:end] = qk[nh:]
            self.v_cache[i, :, start:end] = h[:, (nh + nkv) * hd:].view(t, nkv, hd).transpose(0, 1)
            keys, values = self.k_cache[i, :, :end], self.v_cache[i, :, :end]
            if t == 1:
                # one new token attends to everything cached: each k/v head serves `group` query heads
                scores = torch.matmul(q.view(nkv, group, hd), keys.transpose(1, 2)) * self.scale
                a = torch.matmul(scores.float().softmax(-1).to(values.dtype), values).view(nh, 1, hd)
            else:
                a = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=causal,
                                                   enable_gqa=nkv != nh)
            x = x + o_proj(a.transpose(0, 1).reshape(t, nh * hd))
            # 4. SwiGLU MLP: fused gate/up projection
            gate, up = gate_up_proj(self._rms(x, w_post)).chunk(2, dim=-1)
            x = x + down_proj(F.silu(gate) * up)
        self.pos = end
        # 5. final norm and logits for the last position only
        return self.lm_head(self._rms(x[-1:], self.norm))[0].float()


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

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        import torch

        t = ids.shape[0]
        positions = torch.arange(self.pos, self.pos + t, device=self.device)[None]
        out = self.model(input_ids=ids[None], use_cache=True, position_ids=positions, logits_to_keep=1,
                         **{self.cache_arg: self.cache})  # the cache object fills up in place
        self.pos += t
        return out.logits[0, -1].float()
