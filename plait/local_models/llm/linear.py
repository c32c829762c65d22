"""The linear layers of :class:`~plait.local_models.llm.llama_decoder.LlamaDecoder`: 4-bit, 8-bit and dense.

Each is ``y = x @ W.T (+ b)``, kept as the tensors a prepared decoder file stores (``tensors`` /
``from_tensors``). The 4-bit layers run torch's int4 weight-only CPU kernel in bfloat16; the 8-bit
one (the logits) runs :mod:`~plait.local_models.llm.q8_kernel` where it can be built, else two int4
matmuls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

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

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        out = {f"{prefix}.packed": self.packed, f"{prefix}.scale_zero": self.scale_zero}
        return out if self.bias is None else {**out, f"{prefix}.bias": self.bias}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], prefix: str) -> Int4Linear:
        self = cls.__new__(cls)
        self.packed, self.scale_zero = t[f"{prefix}.packed"], t[f"{prefix}.scale_zero"]
        self.bias = t.get(f"{prefix}.bias")
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.packed, GROUP, self.scale_zero)
        return y if self.bias is None else y + self.bias


class Int8Linear:
    """``y = x @ W.T`` with W as 8-bit integers in groups of 32 (one scale each), like GGUF's Q8_0.

    Stored as the integers (int8) and the scales (float32). Where :mod:`~plait.local_models.llm.q8_kernel`
    builds, the product is its int8 x int8 kernel (float32 out). Elsewhere torch has no grouped int8
    kernel, so each 8-bit value ``q`` is split as ``16 * high + low`` with ``low`` in 0..15 and ``high``
    in -8..7, and the product is two int4 matmuls that add up exactly (bfloat16 out).
    """

    def __init__(self, weight: torch.Tensor) -> None:
        import torch

        n, k = weight.shape
        groups = weight.detach().float().reshape(n, k // GROUP, GROUP)
        scale = (groups.abs().amax(-1) / 127).clamp(min=1e-10).to(torch.bfloat16).float()
        q = (groups / scale[..., None]).round().clamp(-127, 127).to(torch.int8).reshape(n, k)
        self._ready(q, scale.contiguous())

    def _ready(self, q: torch.Tensor, scale: torch.Tensor) -> None:
        import torch

        from plait.local_models.llm import q8_kernel

        self.q, self.scale, self.kernel = q, scale, q8_kernel.load()
        self.high = self.low = None
        if self.kernel is None:
            qi = q.to(torch.int32)
            low, high = qi & 15, (qi >> 4) + 8  # q = 16 * (high - 8) + low
            # (high - 8) * 16s + 0  and  (low - 8) * s + 8s
            self.high = Int4Linear.pack(high, 16 * scale, torch.zeros_like(scale))
            self.low = Int4Linear.pack(low, scale, 8 * scale)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.q8": self.q, f"{prefix}.q8_scale": self.scale}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], prefix: str) -> Int8Linear:
        self = cls.__new__(cls)
        self._ready(t[f"{prefix}.q8"], t[f"{prefix}.q8_scale"])
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        from plait.local_models.llm.q8_kernel import q8_matmul

        if self.kernel is not None:
            return q8_matmul(self.kernel, x.reshape(-1, x.shape[-1]), self.q, self.scale).view(*x.shape[:-1], -1)
        assert self.high is not None and self.low is not None
        mm = torch.ops.aten._weight_int4pack_mm_for_cpu
        return mm(x, self.high[0], GROUP, self.high[1]) + mm(x, self.low[0], GROUP, self.low[1])


class DenseLinear:
    """``y = x @ W.T + b`` in the model's dtype."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.weight, self.bias = weight, bias

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        out = {f"{prefix}.weight": self.weight}
        return out if self.bias is None else {**out, f"{prefix}.bias": self.bias}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], prefix: str) -> DenseLinear:
        return cls(t[f"{prefix}.weight"], t.get(f"{prefix}.bias"))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.linear(x, self.weight, self.bias)
