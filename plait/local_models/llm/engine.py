"""The engine of a local chat model: weights, tokenizer and decoder, loaded once, and the decode loop.

:class:`Engine` is what :class:`~plait.local_models.llm.transformers_chat.TransformersChatModel` (and
:class:`~plait.local_models.llm.llamacpp_chat.LlamaCppChatModel`, with another decoder) runs a request
on: it loads a model folder, a GGUF (through :mod:`~plait.local_models.llm.gguf_cache`) or a prepared
int4 decoder, renders the chat template, and decodes one request at a time under a lock: the prompt
through the KV cache, then a token per step, with a grammar's forced tokens and mask
(:mod:`~plait.local_models.llm.constrained`), the sampler, stop sequences and, when asked, each token's
log-probabilities. A LoRA adapter (``plait tune``) runs beside an int4 base, or is merged into float
weights (see :class:`~plait.local_models.llm.low_rank.LowRank`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from plait.defaults import require
from plait.messages import Message, Usage


def adapter_hash(folder: str | os.PathLike[str]) -> str:
    """The first 16 hex digits of the SHA-256 of an adapter's config and weights (part of cache names)."""
    import hashlib

    h = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        path = Path(folder) / name
        if path.is_file():
            h.update(name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


class Engine:
    """The loaded model, tokenizer and decoder, plus the lock that serialises requests."""

    def __init__(self, spec: str, device: str, dtype: str, quantize: str, adapter: str | None = None) -> None:
        self.spec, self.device_arg, self.dtype_arg, self.quantize_arg = spec, device, dtype, quantize
        self.adapter = adapter
        self.quantized = False
        self.lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._owner: int | None = None
        self.loaded = False
        self.model: Any = None
        self.tokenizer: Any = None
        self.decoder: Any = None
        self.device: Any = None
        self.window = 0
        self.eos: set[int] = set()

    def load(self) -> Engine:
        if self.loaded:
            return self
        with self._load_lock:
            if not self.loaded:
                self._load()
                self.loaded = True
        return self

    def _load(self) -> None:
        require("torch", "local")
        import torch

        folder, four_bit_source, packed = self.spec, False, None
        device = self.device_arg
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.spec.endswith(".gguf"):
            from plait.local_models.llm.gguf_cache import cached_gguf_folder, is_4bit

            folder = str(cached_gguf_folder(self.spec))
            four_bit_source = is_4bit(folder)
            # A GGUF's prepared 4-bit decoder is cached next to its weights. The packing depends on
            # torch's version and the CPU's instruction set, so both are in the name, with the file
            # format's version (v2: the logits' int8 weights as integers and scales) so a later plait
            # never misreads an older file; an adapted model's file also holds the adapter's hash.
            cpu = torch.backends.cpu.get_cpu_capability()
            tag = f"-lora-{adapter_hash(self.adapter)}" if self.adapter else ""
            packed = Path(folder) / f"plait-decoder-int4-v2-torch{torch.__version__}-{cpu}{tag}.safetensors"
        wants_int4 = self.quantize_arg == "int4" or (self.quantize_arg == "auto" and four_bit_source)
        if packed is not None and packed.is_file() and wants_int4 and device == "cpu":
            self._load_prepared(folder, packed)  # seconds faster: no transformers, no re-packing
        else:
            self._load_transformers(folder, device, four_bit_source)
            if packed is not None and self.quantized:
                self.decoder.save(packed)

    def _load_prepared(self, folder: str, packed: Path) -> None:
        """Load a cached GGUF's prepared int4 decoder, its config and its tokenizer, without transformers."""
        from plait.local_models.llm.llama_decoder import LlamaDecoder

        self._load_tokenizer_and_config(folder)
        self.decoder = LlamaDecoder.load(packed)
        self.device, self.quantized = self.decoder.device, True

    def _load_tokenizer_and_config(self, folder: str) -> None:
        """The tokenizer, config, window and EOS tokens of a model folder (transformers only if needed)."""
        from types import SimpleNamespace

        from plait.local_models.llm.decoding import ChatTokenizer

        self.tokenizer = ChatTokenizer.from_folder(folder) or self._hf_tokenizer(folder)
        self.config = SimpleNamespace(**json.loads((Path(folder) / "config.json").read_text()))
        try:
            generation = json.loads((Path(folder) / "generation_config.json").read_text())
        except FileNotFoundError:
            generation = {}
        self._set_window_and_eos(self.config, generation.get("eos_token_id"))

    def _hf_tokenizer(self, folder: str) -> Any:
        require("transformers", "local")
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder)

    def _set_window_and_eos(self, config: Any, generation_eos: Any) -> None:
        self.window = int(getattr(config, "max_position_embeddings", 0) or self.tokenizer.model_max_length)
        eos: Any = [generation_eos, self.tokenizer.eos_token_id]
        self.eos = {int(t) for e in eos if e is not None for t in (e if isinstance(e, list) else [e])}

    def _load_transformers(self, folder: str, device: str, four_bit_source: bool) -> None:
        require("transformers", "local")
        import torch
        from transformers import AutoModelForCausalLM

        from plait.local_models.llm import llama_decoder
        from plait.local_models.llm.decoding import ChatTokenizer

        dtype = self.dtype_arg
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        try:
            # plait writes a GGUF's folder itself, with a plain tokenizers file: no need for transformers' class
            fast = ChatTokenizer.from_folder(folder) if self.spec.endswith(".gguf") else None
            self.tokenizer = fast or self._hf_tokenizer(folder)
            model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
        except OSError as e:
            raise OSError(f"Could not load the model {self.spec!r}: {e}. Pass a local model folder, a .gguf "
                          "file, or a hub id that is downloaded (or reachable when HF_HUB_OFFLINE is unset).") from e
        if self.adapter is not None:
            require("peft", "tune")
            import warnings

            from peft import PeftModel

            with warnings.catch_warnings():  # peft calls transformers APIs that warn of their own deprecation
                warnings.simplefilter("ignore", FutureWarning)
                model = PeftModel.from_pretrained(model, self.adapter)
        model = model.to(device).eval()
        self.device = model.device
        cfg = self.config = model.config
        self._set_window_and_eos(cfg, getattr(model.generation_config, "eos_token_id", None))
        lean = llama_decoder.supports(cfg)
        can_int4 = lean and self.device.type == "cpu" and llama_decoder.can_quantize(cfg)
        if self.quantize_arg == "int4" and not can_int4:
            raise ValueError(f"quantize='int4' is not available for {self.spec!r} on {self.device}: it needs a "
                             f"{'/'.join(llama_decoder.SUPPORTED)} model on the CPU, sizes that are multiples of 32 "
                             "and torch >= 2.6. Use quantize='auto' or 'none'.")
        self.quantized = self.quantize_arg == "int4" or (self.quantize_arg == "auto" and can_int4 and four_bit_source)
        lora = None
        if self.adapter is not None:
            # int4: the base weights packed as they are, the adapter's updates beside them (merging first
            # would round most of the adapter away, see low_rank.py); otherwise merged in exactly
            if lean and self.quantized:
                from plait.local_models.llm.low_rank import low_rank_updates

                lora = low_rank_updates(model)
                model = model.unload()
            else:
                model = model.merge_and_unload()
        if lean:
            self.decoder = llama_decoder.LlamaDecoder(model, quantize="int4" if self.quantized else None, lora=lora)
        else:
            self.decoder = llama_decoder.HFDecoder(model)
            self.model = model

    def render(self, messages: list[Message]) -> list[int]:
        """Token ids of the conversation with the generation prompt, via the tokenizer's chat template."""
        turns = [{"role": m.role, "content": m.content} for m in messages]
        if getattr(self.tokenizer, "chat_template", None):
            out = self.tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=True)
            ids = out["input_ids"] if hasattr(out, "keys") else out
            return [int(t) for t in ids]
        # A base model without a chat template: a plain "role: content" transcript.
        text = "".join(f"{t['role']}: {t['content']}\n" for t in turns) + "assistant:"
        return [int(t) for t in self.tokenizer(text)["input_ids"]]

    def generate(self, ids: list[int], budget: int, sampler: Any, stop: list[str] | None,
                 constraint: Any = None) -> Iterator[tuple[str, str | None, Usage | None, list[Any] | None]]:
        """Yield ``(text, finish_reason, usage, logprobs)``; the last item has the finish reason and usage.

        ``logprobs``: None unless the sampler records them (``Sampler(logprobs=k)``); then the
        :class:`~plait.messages.TokenLogprob` of the tokens whose texts make up ``text``.

        ``constraint``: a :class:`~plait.local_models.llm.constrained.Constraint` the answer must follow.
        """
        with self._turn():
            yield from self._decode(ids, budget, sampler, stop, constraint)

    def generate_n(self, ids: list[int], budget: int, samplers: list[Any], stop: list[str] | None,
                   constraints: list[Any] | None = None
                   ) -> Iterator[tuple[int, str, str | None, Usage | None, list[Any] | None]]:
        """``len(samplers)`` answers to one prompt in one batched decode: yields ``(choice, text,
        finish_reason, usage, logprobs)`` as :meth:`generate` does, tagged with the choice's index.
        ``constraints``: one per choice (each its own grammar state), or None."""
        with self._turn():
            yield from self._decode_n(ids, budget, samplers, stop, constraints)

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        if self._owner == threading.get_ident():
            raise RuntimeError("This thread is already streaming from this model: finish (or close) "
                               "that stream before starting another request from the same thread.")
        with self.lock:  # one request at a time: callers queue here
            self._owner = threading.get_ident()
            try:
                yield
            finally:
                self._owner = None

    def _decode(self, ids: list[int], budget: int, sampler: Any, stop: list[str] | None,
                constraint: Any) -> Iterator[tuple[str, str | None, Usage | None, list[Any] | None]]:
        import torch

        from plait.local_models.llm.decoding import SequenceText

        out = SequenceText(self.tokenizer, stop, sampler)
        take, stops = out.take, out.stops
        finish = "length"
        self.decoder.start(len(ids) + budget)
        feed = list(ids)  # 1. the tokens to run through the model next: the whole prompt at first
        while True:
            # 2. tokens a grammar forces (a JSON key, a tool's name) are taken without sampling them,
            #    and go through the model together in the next step
            forced = constraint.forced(budget - out.produced) if constraint and not stops.stopped else []
            for token in forced:
                feed.append(token)
                text, logprobs = take(token, sampled=False)
                if text or logprobs:
                    yield text, None, None, logprobs
                if stops.stopped:
                    break
            if stops.stopped or (constraint is not None and constraint.done):
                # a stop sequence, or the answer is complete (EOS is all a grammar would allow), or
                # it was completed early to fit max_tokens
                finish = "length" if constraint and constraint.closed and not stops.stopped else "stop"
                break
            if out.produced >= budget:
                break
            # 3. the new tokens through the model, using the KV cache; logits of the last position,
            #    with the tokens a grammar does not allow next at -inf
            with torch.inference_mode():
                logits = self.decoder.step(torch.tensor(feed, device=self.device))
                if constraint is not None:
                    constraint.mask(logits)
            # 4. pick the next token; EOS ends the answer
            token = sampler(logits)
            if token in self.eos:
                out.produced += 1
                finish = "stop"
                break
            # 5. a grammar takes it (or, near the end of the budget, a completion of the answer instead)
            chosen = token
            feed = constraint.advance(token, budget - out.produced) if constraint is not None else [token]
            # 6. its text (held back while a character or a possible stop sequence is incomplete)
            for i, token in enumerate(feed):
                text, logprobs = take(token, sampled=i == 0 and token == chosen)
                if text or logprobs:
                    yield text, None, None, logprobs
                if stops.stopped:
                    break
        tail, finish, logprobs = out.end(finish)
        yield tail, finish, self._usage(ids, out.produced), logprobs

    def _decode_n(self, ids: list[int], budget: int, samplers: list[Any], stop: list[str] | None,
                  constraints: list[Any] | None) -> Iterator[tuple[int, str, str | None, Usage | None, list[Any] | None]]:
        """``n`` sequences from one prompt, a row each in a batch that feeds one token per row a step.

        A row's tokens wait in ``pending`` until they have been through the model: a grammar's forced
        tokens go one a step (not several at once as in :meth:`_decode`), and a row samples again only
        once its last pending token is in, so every step is a ``(rows, 1)`` batch.
        """
        import torch

        from plait.local_models.llm.decoding import SequenceText

        n = len(samplers)
        outs = [SequenceText(self.tokenizer, stop, s) for s in samplers]
        cons = constraints or [None] * n
        pending: list[list[int]] = [[] for _ in range(n)]  # taken, not yet through the model
        finish: list[str | None] = [None] * n

        def turn(i: int, logits: Any) -> Iterator[tuple[int, str, str | None, Usage | None, list[Any] | None]]:
            """Choice i's move, as in one pass of :meth:`_decode`'s loop: with fresh logits, pick a token
            (a grammar's mask first) and take it; then tokens a grammar forces; then whether it has ended."""
            out, c = outs[i], cons[i]
            if logits is not None:
                if c is not None:
                    c.mask(logits)
                token = out.sampler(logits)
                if token in self.eos:
                    out.produced += 1
                    finish[i] = "stop"
                    return
                chosen = token
                pending[i] = list(c.advance(token, budget - out.produced)) if c is not None else [token]
                for k, token in enumerate(pending[i]):
                    text, logprobs = out.take(token, sampled=k == 0 and token == chosen)
                    if text or logprobs:
                        yield i, text, None, None, logprobs
                    if out.stops.stopped:
                        break
            for token in c.forced(budget - out.produced) if c is not None and not out.stops.stopped else []:
                pending[i].append(token)
                text, logprobs = out.take(token, sampled=False)
                if text or logprobs:
                    yield i, text, None, None, logprobs
                if out.stops.stopped:
                    break
            if out.stops.stopped or (c is not None and c.done):
                finish[i] = "length" if c is not None and c.closed and not out.stops.stopped else "stop"
            elif out.produced >= budget:
                finish[i] = "length"

        # 1. the prompt through the model once; each choice takes what a grammar forces first
        self.decoder.start(len(ids) + budget)
        with torch.inference_mode():
            logits = self.decoder.step(torch.tensor(ids, device=self.device)).expand(n, -1).clone()
        for i in range(n):
            yield from turn(i, None)
            if finish[i] is None and not pending[i]:
                yield from turn(i, logits[i])  # 2. ...or picks its first token from the prompt's logits
        # 3. the prompt's KV cache copied into one row per choice
        self.decoder.fork(n)
        live = list(range(n))  # the choice each row of the batch decodes
        while True:
            # 4. a finished choice reports its end (its own finish reason and usage) and leaves the batch
            ended = [i for i in live if finish[i] is not None]
            for i in ended:
                tail, reason, logprobs = outs[i].end(finish[i] or "stop")
                yield i, tail, reason, self._usage(ids, outs[i].produced), logprobs
            if ended:
                self.decoder.keep([row for row, i in enumerate(live) if finish[i] is None])
                live = [i for i in live if finish[i] is None]
            if not live:
                return
            # 5. the next pending token of every live choice through the model together: a (rows, 1) batch
            with torch.inference_mode():
                logits = self.decoder.step(torch.tensor([pending[i].pop(0) for i in live], device=self.device)[:, None])
            # 6. each choice whose tokens are all in moves on from its row's logits (with its own sampler)
            for row, i in enumerate(live):
                if not pending[i]:
                    yield from turn(i, logits[row])

    @staticmethod
    def _usage(ids: list[int], produced: int) -> Usage:
        return Usage(prompt_tokens=len(ids), completion_tokens=produced, total_tokens=len(ids) + produced)
