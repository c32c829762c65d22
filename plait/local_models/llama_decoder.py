"""A lean forward pass for Llama-family decoders, with a preallocated KV cache.

transformers' ``generate`` spends most of a small model's decode step in Python: module calls,
cache objects, logits processors. For the architectures listed in :data:`SUPPORTED` this module
reads the weights out of the transformers model once and runs the same maths as plain tensor ops:
q/k/v and gate/up projections fused into one matmul each, rotary tables precomputed by the
model's own rotary embedding (so every rope scaling variant stays right), a KV cache allocated once
per request, and logits only for the last position. ``tests/local_models`` checks the logits match
transformers' on random Llama, Mistral and Qwen2 configs.

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


class LlamaDecoder:
    """Decode with a transformers Llama-family model's weights, without its module machinery."""

    def __init__(self, model: Any) -> None:
        import torch

        cfg = model.config
        self.config = cfg
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps = cfg.rms_norm_eps
        self.max_positions = cfg.max_position_embeddings
        self.device = model.device
        self.dtype = model.dtype
        inner = model.model
        self.rotary = inner.rotary_emb
        self.embed = inner.embed_tokens.weight
        self.norm = inner.norm.weight
        self.lm_head = model.lm_head.weight
        with torch.no_grad():
            self.layers = []
            for layer in inner.layers:
                attn, mlp = layer.self_attn, layer.mlp
                qkv_bias = None
                if attn.q_proj.bias is not None:
                    qkv_bias = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]).contiguous()
                self.layers.append((
                    layer.input_layernorm.weight,
                    torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]).contiguous(),
                    qkv_bias,
                    attn.o_proj.weight,
                    attn.o_proj.bias,
                    layer.post_attention_layernorm.weight,
                    torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).contiguous(),
                    mlp.down_proj.weight,
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
        import torch

        # Same order of operations as transformers' LlamaRMSNorm: normalise in float32, cast, scale.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

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
        for i, (w_in, w_qkv, b_qkv, w_o, b_o, w_post, w_gate_up, w_down) in enumerate(self.layers):
            # 3. attention: fused q/k/v projection, rope, write k/v into the cache, attend
            h = F.linear(self._rms(x, w_in), w_qkv, b_qkv)
            q, k, v = h.split((nh * hd, nkv * hd, nkv * hd), dim=-1)
            q = q.view(t, nh, hd).transpose(0, 1)
            k = k.view(t, nkv, hd).transpose(0, 1)
            q = q * cos + torch.cat((-q[..., half:], q[..., :half]), dim=-1) * sin
            k = k * cos + torch.cat((-k[..., half:], k[..., :half]), dim=-1) * sin
            self.k_cache[i, :, start:end] = k
            self.v_cache[i, :, start:end] = v.view(t, nkv, hd).transpose(0, 1)
            a = F.scaled_dot_product_attention(q, self.k_cache[i, :, :end], self.v_cache[i, :, :end],
                                               attn_mask=mask, is_causal=causal, enable_gqa=nkv != nh)
            x = x + F.linear(a.transpose(0, 1).reshape(t, nh * hd), w_o, b_o)
            # 4. SwiGLU MLP: fused gate/up projection
            gate, up = F.linear(self._rms(x, w_post), w_gate_up).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, w_down)
        self.pos = end
        # 5. final norm and logits for the last position only
        return F.linear(self._rms(x[-1:], self.norm), self.lm_head)[0].float()


class HFDecoder:
    """The same ``start``/``step`` interface over any transformers causal LM, with a DynamicCache."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.device = model.device
        self.cache: Any = None
        self.pos = 0

    def start(self, max_len: int) -> None:
        from transformers import DynamicCache

        self.cache = DynamicCache(config=self.model.config)
        self.pos = 0

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        import torch

        t = ids.shape[0]
        positions = torch.arange(self.pos, self.pos + t, device=self.device)[None]
        out = self.model(input_ids=ids[None], past_key_values=self.cache, use_cache=True,
                         position_ids=positions, logits_to_keep=1)
        self.cache = out.past_key_values
        self.pos += t
        return out.logits[0, -1].float()
