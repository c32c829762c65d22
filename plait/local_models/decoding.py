"""The pieces of a decode loop that are not the model: sampling, detokenizing, stop sequences.

- :class:`Sampler` picks the next token: argmax when ``temperature`` is unset or 0, else
  temperature / top-k / top-p sampling from a seeded ``torch.Generator`` (same seed, same tokens).
- :class:`IncrementalDetokenizer` turns a growing list of token ids into text pieces, holding back
  a piece while it ends in an incomplete UTF-8 character (byte-level BPE splits multi-byte
  characters across tokens).
- :class:`StopMatcher` holds back text that might be the start of a stop sequence, so a stop string
  never leaks into the stream and the streamed pieces add up to exactly the final text.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class Sampler:
    """Greedy or sampled choice of the next token from float32 logits."""

    def __init__(self, temperature: float | None = None, top_p: float | None = None,
                 top_k: int | None = None, seed: int | None = None, device: Any = "cpu") -> None:
        import torch

        if temperature is not None and temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_p is not None and not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.greedy = not temperature
        self.temperature = temperature or 1.0
        self.top_p = top_p
        self.top_k = top_k
        self.generator: torch.Generator | None = None
        if not self.greedy:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(seed if seed is not None else random.getrandbits(63))

    def __call__(self, logits: torch.Tensor) -> int:
        import torch

        if self.greedy:
            return int(logits.argmax())
        logits = logits / self.temperature
        if self.top_k is not None or (self.top_p is not None and self.top_p < 1):
            # 1. sort (stable, so tied tokens keep the order argmax sees: top_k=1 is exactly greedy)
            sorted_logits, order = torch.sort(logits, descending=True, stable=True)
            drop = torch.zeros_like(sorted_logits, dtype=torch.bool)
            # 2. keep the k best
            if self.top_k is not None:
                drop[self.top_k:] = True
            # 3. drop tokens once the probability mass *before* them reaches top_p
            if self.top_p is not None and self.top_p < 1:
                probs = sorted_logits.softmax(-1)
                drop |= probs.cumsum(-1) - probs >= self.top_p
            logits = logits.masked_fill(drop.scatter(0, order, drop), float("-inf"))
        probs = logits.softmax(-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))


class IncrementalDetokenizer:
    """Text pieces for token ids added one at a time (the prefix/read offset scheme vLLM uses)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # ids before this are already text; decoding from here keeps word spacing right
        self.read = 0  # ids before this have been turned into emitted text

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def add(self, token: int) -> str:
        """Add a token; returns the new text (empty while a character is incomplete)."""
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before):]
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end), as decoded."""
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        self.prefix = self.read = len(self.ids)
        return after[len(before):]


class StopMatcher:
    """Cuts generated text at the first stop sequence and holds back possible stop prefixes."""

    def __init__(self, stop: list[str] | None) -> None:
        self.stop = [s for s in (stop or []) if s]
        self.text = ""
        self.sent = 0
        self.stopped = False

    def add(self, piece: str) -> str:
        """Add generated text; returns what may be emitted now. Sets ``stopped`` at a stop sequence."""
        self.text += piece
        if not self.stop:
            out, self.sent = self.text[self.sent:], len(self.text)
            return out
        # A stop sequence can only start in the unsent part or just before it.
        search_from = max(0, self.sent - max(len(s) for s in self.stop) + 1)
        hits = [i for s in self.stop if (i := self.text.find(s, search_from)) >= 0]
        if hits:
            cut = min(hits)
            out = self.text[self.sent:cut]
            self.text, self.sent, self.stopped = self.text[:cut], cut, True
            return out
        safe = len(self.text) - self._held_back()
        out = self.text[self.sent:safe] if safe > self.sent else ""
        self.sent = max(self.sent, safe)
        return out

    def _held_back(self) -> int:
        """Length of the longest end of the text that is the beginning of a stop sequence."""
        longest = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.text)), longest, -1):
                if self.text.endswith(s[:n]):
                    longest = n
                    break
        return longest

    def flush(self) -> str:
        """The held-back tail, at the end of generation (it was not a stop sequence after all)."""
        out, self.sent = self.text[self.sent:], len(self.text)
        return out
