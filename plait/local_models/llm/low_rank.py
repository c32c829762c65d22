"""A LoRA adapter's updates beside a decoder's (packed) projections.

The bundled model's weights lie exactly on the 4-bit grid, so merging an adapter and re-packing
rounds most of it away. Instead :class:`LowRank` keeps the base projection as it is and adds the
adapter's low-rank update in float32; for fused projections (q/k/v, gate/up) the parts' A matrices
are stacked and their B matrices placed block-diagonally (:func:`stacked`). Used by
:class:`plait.local_models.llm.llama_decoder.LlamaDecoder`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class LowRank:
    """``y = base(x) + (x @ A.T) @ B.T``: an adapter's update beside a (packed) projection, in float32."""

    def __init__(self, base: Any, a: torch.Tensor, b: torch.Tensor) -> None:
        self.base, self.a, self.b = base, a, b

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {**self.base.tensors(prefix), f"{prefix}.lora_a": self.a, f"{prefix}.lora_b": self.b}

    @classmethod
    def wrap(cls, base: Any, t: dict[str, torch.Tensor], prefix: str) -> Any:
        """``base`` with the update stored under ``prefix`` in ``t``, if there is one."""
        if f"{prefix}.lora_a" not in t:
            return base
        return cls(base, t[f"{prefix}.lora_a"], t[f"{prefix}.lora_b"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + ((x.float() @ self.a.T) @ self.b.T).to(x.dtype)


def low_rank_updates(peft_model: Any) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{module name: (A, B * scaling)}`` of a peft LoRA model's layers (names as in the base model)."""
    out = {}
    for name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            key = name.removeprefix("base_model.model.")
            a = module.lora_A["default"].weight.detach().float()
            b = module.lora_B["default"].weight.detach().float() * module.scaling["default"]
            out[key] = (a, b)
    return out


def stacked(updates: dict[str, tuple[torch.Tensor, torch.Tensor]], names: list[str],
             sizes: list[int]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One (A, B) for a fused projection: the parts' A stacked, their B block-diagonal (zeros where a part has none)."""
    import torch

    parts = [(updates.get(n), size) for n, size in zip(names, sizes, strict=True)]
    if all(u is None for u, _ in parts):
        return None
    a_blocks = [u[0] for u, _ in parts if u is not None]
    b = torch.zeros(sum(sizes), sum(x.shape[0] for x in a_blocks))
    row = col = 0
    for u, size in parts:
        if u is not None:
            b[row:row + size, col:col + u[0].shape[0]] = u[1]
            col += u[0].shape[0]
        row += size
    return torch.cat(a_blocks), b
