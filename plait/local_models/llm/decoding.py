"""The pieces of a decode loop that are not the model: sampling, detokenizing, stop sequences.

- :class:`Sampler` picks the next token: argmax when ``temperature`` is unset or 0, else
  temperature / top-k / top-p sampling from a seeded ``torch.Generator`` (same seed, same tokens).
  ``frequency_penalty`` / ``presence_penalty`` work as in the OpenAI API: before choosing, each
  token already generated in this answer has its logit lowered by ``frequency_penalty`` times its
  count plus ``presence_penalty`` once, so a small model stops looping on a phrase.
  With ``logprobs=k`` it also records, for each choice, the log-probability of the chosen token
  and the ``k`` most likely ones (see :attr:`Sampler.last`); otherwise that costs nothing.
- :class:`LogprobText` lines per-token log-probabilities up with the streamed text.
- :class:`SequenceText` puts these together for one generated sequence (one per choice).
- :class:`IncrementalDetokenizer` turns a growing list of token ids into text pieces, holding back
  a piece while it ends in an incomplete UTF-8 character (byte-level BPE splits multi-byte
  characters across tokens).
- :class:`StopMatcher` holds back text that might be the start of a stop sequence, so a stop string
  never leaks into the stream and the streamed pieces add up to exactly the final text.
- :class:`ChatTokenizer` renders chat templates and (de)tokenizes with the ``tokenizers`` library
  alone, so a model can start without importing transformers.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class Sampler:
    """Greedy or sampled choice of the next token from float32 logits."""

    def __init__(self, temperature: float | None = None, top_p: float | None = None,
                 top_k: int | None = None, seed: int | None = None, device: Any = "cpu", *,
                 frequency_penalty: float | None = None, presence_penalty: float | None = None,
                 logprobs: int | None = None) -> None:
        import torch

        # log-probabilities to record (the chosen token's, and this many top ones), or None: off
        self.logprobs = logprobs
        self.last: tuple[float, list[tuple[int, float]]] = (0.0, [])

        for name, value in (("frequency_penalty", frequency_penalty), ("presence_penalty", presence_penalty)):
            if value is not None and not -2 <= value <= 2:
                raise ValueError(f"{name} must be between -2 and 2 (as in the OpenAI API), got {value}")
        self.frequency_penalty = frequency_penalty or 0.0
        self.presence_penalty = presence_penalty or 0.0
        self.counts: dict[int, int] = {}  # tokens chosen so far, when a penalty needs them

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
        if not (self.frequency_penalty or self.presence_penalty):
            token = self._choose(logits)
            if self.logprobs is not None:
                self._record(logits, token)
            return token
        if self.counts:
            import torch

            ids = torch.tensor(list(self.counts), device=logits.device)
            counts = torch.tensor(list(self.counts.values()), dtype=logits.dtype, device=logits.device)
            logits = logits.clone()
            logits[ids] -= self.frequency_penalty * counts + self.presence_penalty
        token = self._choose(logits)
        if self.logprobs is not None:
            self._record(logits, token)
        self.counts[token] = self.counts.get(token, 0) + 1
        return token

    def _record(self, logits: torch.Tensor, token: int) -> None:
        """The log-softmax of the logits the choice was made from (penalties and a grammar's mask
        applied, temperature / top-k / top-p not): the chosen token's value and the top ones."""
        logp = logits.float().log_softmax(-1)
        top: list[tuple[int, float]] = []
        if self.logprobs:
            values, ids = logp.topk(min(self.logprobs, logp.numel()))  # sorted, most likely first
            top = [(int(i), float(v)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)
                   if v != float("-inf")]  # tokens a grammar forbids are not candidates
        self.last = (float(logp[token]), top)

    def _choose(self, logits: torch.Tensor) -> int:
        import torch

        if self.greedy:
            # numpy on the CPU: torch's threaded argmax over a 49k vocabulary costs ~0.3 ms on a busy CPU
            on_cpu = logits.device.type == "cpu" and logits.dtype == torch.float32
            return int(logits.numpy().argmax() if on_cpu else logits.argmax())
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


class LogprobText:
    """Lines per-token log-probabilities up with the text a decode loop emits.

    Each generated token is given the text it adds to the answer (the incremental detokenizer's
    piece: ``""`` for a token that ends inside a multi-byte character, whose next token carries the
    whole character). Text is handed on only at token boundaries, so every piece of text comes with
    exactly the tokens whose texts make it up. At a stop sequence the token it starts in keeps only
    the text before it, and later tokens are dropped: the tokens' texts always add up to the answer.
    """

    def __init__(self) -> None:
        self.tokens: list[list[Any]] = []  # [text, logprob, top] of tokens not handed on yet
        self.pending = ""  # emitted text not handed on yet (it ends inside a token's text)

    def add(self, text: str, logprob: float, top: list[tuple[str, float]]) -> None:
        """A token: its piece of text, its log-probability and the top candidates' (text, logprob)."""
        self.tokens.append([text, logprob, top])

    def emit(self, out: str, final: bool = False) -> tuple[str, list[list[Any]]]:
        """Text the stop matcher lets out; returns the part made of whole tokens, and those tokens.

        ``final``: generation has ended, ``out`` is the last text: what is left is cut to fit it
        (a stop sequence inside a token) or the rest of the text goes to the last token (a flushed
        incomplete character).
        """
        self.pending += out
        taken, n = [], 0
        while self.tokens and len(self.tokens[0][0]) <= len(self.pending) - n:
            if not self.tokens[0][0] and len(self.tokens) == 1 and not final:
                break  # inside a character: wait for the token that completes it (or the flush)
            token = self.tokens.pop(0)
            taken.append(token)
            n += len(token[0])
        if final:
            if self.tokens and n < len(self.pending):  # a stop sequence started inside this token
                token = self.tokens.pop(0)
                token[0] = self.pending[n:]
                taken.append(token)
            elif taken and n < len(self.pending):  # a flushed incomplete character: its last token's
                taken[-1][0] += self.pending[n:]
            self.tokens, n = [], len(self.pending)
        text, self.pending = self.pending[:n], self.pending[n:]
        return text, taken


class SequenceText:
    """One generated sequence on its way from token ids to text that may be emitted: incremental
    detokenizing, stop sequences and, when its sampler records them, log-probabilities lined up
    with the text (:class:`LogprobText`). A decode loop keeps one per sequence (``n`` choices)."""

    def __init__(self, tokenizer: Any, stop: list[str] | None, sampler: Sampler) -> None:
        self.tokenizer, self.sampler = tokenizer, sampler
        self.detok, self.stops = IncrementalDetokenizer(tokenizer), StopMatcher(stop)
        self.aligned = LogprobText() if sampler.logprobs is not None else None
        self.produced = 0  # tokens generated so far (a final EOS included)

    def take(self, token: int, sampled: bool) -> tuple[str, list[Any] | None]:
        """A generated token's text as it may be emitted now (and, when asked for, its tokens)."""
        self.produced += 1
        piece = self.detok.add(token)
        if self.aligned is None:
            return self.stops.add(piece), None
        # a token the grammar wrote (forced, or a completion to fit max_tokens) had no choice: logprob 0
        logprob, top = self.sampler.last if sampled else (0.0, [(token, 0.0)] if self.sampler.logprobs else [])
        self.aligned.add(piece, logprob, [(self.tokenizer.decode([t]), v) for t, v in top])
        out = self.stops.add(piece)
        text, tokens = self.aligned.emit(out, final=self.stops.stopped)  # at a stop sequence: the last tokens
        return text, token_logprobs(tokens)

    def end(self, finish: str) -> tuple[str, str, list[Any] | None]:
        """At the end: the held-back text, the finish reason (``stop`` where that text ends in a stop
        sequence) and the last tokens' logprobs (None unless asked for)."""
        tail = ""
        if not self.stops.stopped:
            tail = self.stops.add(self.detok.flush())
            finish = "stop" if self.stops.stopped else finish
            tail += self.stops.flush()
        logprobs = None
        if self.aligned is not None:
            tail, tokens = self.aligned.emit(tail, final=True)
            logprobs = token_logprobs(tokens)
        return tail, finish, logprobs


def token_logprobs(tokens: list[Any]) -> list[Any]:
    """:class:`~plait.messages.TokenLogprob` of ``[text, logprob, [(text, logprob), ...]]`` entries."""
    from plait.messages import TokenLogprob, TopLogprob

    return [TokenLogprob(token=text, logprob=logprob, bytes=list(text.encode()),
                         top_logprobs=[TopLogprob(token=t, logprob=v, bytes=list(t.encode())) for t, v in top])
            for text, logprob, top in tokens]


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


class ChatTokenizer:
    """A ``tokenizers`` tokenizer plus the model's chat template, without importing transformers.

    Enough of the transformers tokenizer interface for the decode loop (``apply_chat_template``,
    ``decode``, ``__call__``, ``eos_token_id``), rendered the way transformers renders chat templates
    (a sandboxed jinja2 environment with ``trim_blocks``/``lstrip_blocks``, the special tokens as
    variables). Importing transformers and building its tokenizer takes ~2 s on 2 cores; this ~0.2 s.
    Use :meth:`from_folder`, which returns None for a folder it cannot reproduce exactly.
    """

    def __init__(self, tokenizer: Any, chat_template: str | None, special_tokens: dict[str, str],
                 model_max_length: int = 2**63) -> None:
        self.tokenizer = tokenizer
        self.model_max_length = model_max_length
        self.chat_template = chat_template
        self.special_tokens = special_tokens
        eos = special_tokens.get("eos_token")
        self.eos_token_id: int | None = tokenizer.token_to_id(eos) if eos else None
        self._template = _compile_template(chat_template) if chat_template else None

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str]) -> ChatTokenizer | None:
        """The folder's ``tokenizer.json`` and chat template, or None when transformers would do more.

        None for: no ``tokenizer.json``, ``clean_up_tokenization_spaces`` set, several named chat
        templates, or a template that uses transformers-only tags (such as ``{% generation %}``).
        """
        import jinja2
        from tokenizers import Tokenizer

        path = Path(folder)
        try:
            config = json.loads((path / "tokenizer_config.json").read_text())
        except FileNotFoundError:
            config = {}
        if not (path / "tokenizer.json").is_file() or config.get("clean_up_tokenization_spaces"):
            return None
        template = config.get("chat_template")
        if (path / "chat_template.jinja").is_file():
            template = (path / "chat_template.jinja").read_text()
        if template is not None and not isinstance(template, str):
            return None
        special = {}
        for name in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
            value = config.get(name)
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str):
                special[name] = value
        try:
            max_length = config.get("model_max_length")
            return cls(Tokenizer.from_file(str(path / "tokenizer.json")), template, special,
                       int(max_length) if isinstance(max_length, (int, float)) else 2**63)
        except jinja2.TemplateSyntaxError:
            return None

    def apply_chat_template(self, conversation: list[dict[str, Any]], add_generation_prompt: bool = False,
                            tokenize: bool = True) -> Any:
        """The conversation rendered by the chat template; token ids (no special tokens added) by default."""
        if self._template is None:
            raise ValueError("This tokenizer has no chat template.")
        text = self._template.render(messages=conversation, tools=None, documents=None,
                                     add_generation_prompt=add_generation_prompt, **self.special_tokens)
        return self.encode(text, add_special_tokens=False) if tokenize else text

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text, add_special_tokens)}

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def __len__(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))


def _compile_template(source: str) -> Any:
    """Compile a chat template in an environment like transformers' (sandboxed, same filters and globals)."""
    from datetime import datetime

    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        # jinja2's own tojson escapes HTML characters, which would change the prompt
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)
