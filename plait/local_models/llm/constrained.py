"""Grammar-constrained decoding for local models: answers that always have the requested shape.

A local model takes these options and enforces them while it decodes, with `llguidance
<https://github.com/guidance-ai/llguidance>`_ (the engine behind OpenAI's, vLLM's and llama.cpp's
structured outputs; chosen over xgrammar and outlines-core for the reasons in ``docs/models.md``):

- ``response_format``: ``{"type": "json_schema", "json_schema": {"schema": ...}}`` or
  ``{"type": "json_object"}`` (``{"type": "text"}`` is the default, no constraint);
- ``guided_regex`` (the whole answer matches it) and ``guided_choice`` (the answer is one of
  the strings), as vLLM names them;
- ``tools`` with ``tool_choice``: ``"required"`` (or ``"any"``) or a tool's name forces a call
  whose arguments fit the tool's schema; ``"auto"`` lets the model answer text or a call, and a
  reply that starts a call (``{`` or ``[``) is held to the calls' grammar; ``"none"`` turns
  tools off (the reply cannot start like a call, even after a history of calls).
  ``parallel_tool_calls=False`` allows one call only.

How: :func:`plan` adds the instructions to the prompt (the tool-call wire form of
:mod:`plait.prompted_tools`, ``{"tool": NAME, "arguments": {...}}``, or a list of those) and
writes one grammar for the request. :func:`grammars` compiles it once per model and caches it by
its text. In the decode loop a :class:`Constraint` sets the logits of the tokens the grammar does
not allow to -inf before sampling, takes the tokens the grammar forces without sampling them (a
JSON key, a tool's name: one model step for several tokens), and ends the answer when the grammar
is complete. :class:`~plait.local_models.llm.replies.ReplyStream` turns the text into chunks:
content, or tool-call chunks whose arguments arrive as deltas.

JSON is written the way ``json.dumps`` writes it (``", "`` and ``": "``, no other whitespace):
the form the prompt shows, and a small model cannot loop on blank lines. An object schema with
``properties`` and no ``additionalProperties`` gets ``additionalProperties: false`` (every answer
still validates against the schema as given). Keywords llguidance does not implement (such as
``uniqueItems``) are not enforced.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plait import prompted_tools as pt
from plait.defaults import require
from plait.messages import Message
from plait.tools import Tool

if TYPE_CHECKING:
    import torch

#: How JSON is written under a grammar (llguidance's JSON options).
JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ", "lenient": True}
#: Text in an "auto" tool reply: anything that does not start like a call (or with whitespace).
_TEXT = r"/[^\[{\s](.|\n)*/"
_CACHE_SIZE = 64


@dataclass
class Plan:
    """What one request enforces: its grammar (None: nothing) and the tools a reply may call."""

    grammar: str | None
    tools: list[Tool] | None = None
    free_text: bool = False  # "auto" tools: once the reply starts as text, the grammar lets go
    json: bool = True  # the answer is JSON (not a regex or a choice): how to close it early


def plan(messages: list[Message], options: dict[str, Any]) -> tuple[list[Message], Plan]:
    """The prompt (with tool / JSON instructions) and the grammar for a request's options."""
    messages = pt.flatten_tool_history(messages)
    answer = _answer_rule(options)
    if options.get("response_format") and answer is not None:
        messages = pt.add_system(messages, pt.json_instructions(options["response_format"]))
    tools, choice = options.get("tools") or [], options.get("tool_choice") or "auto"
    is_json = not (options.get("guided_regex") or options.get("guided_choice"))
    if tools and choice == "none" and answer is None:
        # tools off, but a history of calls: the reply must not start like a call (then it is free text)
        return messages, Plan(f"%llguidance {{}}\nstart: {_TEXT}", None, free_text=True, json=False)
    if not tools or choice == "none":
        return messages, Plan(f"%llguidance {{}}\nstart: {answer}" if answer else None, json=is_json)
    parallel = options.get("parallel_tool_calls") is not False
    messages = pt.add_system(messages, pt.tool_instructions(tools, choice, parallel))
    if choice not in ("auto", "required", "any"):
        tools = [t for t in tools if t.name == choice]
    calls = "calls: %json " + json.dumps(_calls_schema(tools, parallel))
    if choice != "auto":
        return messages, Plan(f"%llguidance {{}}\nstart: calls\n{calls}", tools)
    free = answer is None
    return messages, Plan(f"%llguidance {{}}\nstart: calls | {answer or _TEXT}\n{calls}", tools, free, is_json)


def _answer_rule(options: dict[str, Any]) -> str | None:
    """The grammar of a non-call answer from ``response_format`` / ``guided_regex`` / ``guided_choice``."""
    fmt, regex, choice = options.get("response_format"), options.get("guided_regex"), options.get("guided_choice")
    kind = (fmt or {}).get("type", "text")
    if kind not in ("text", "json_object", "json_schema"):
        raise ValueError(f"Unknown response_format type {kind!r}: use 'json_schema', 'json_object' or 'text'")
    given = [name for name, on in (("response_format", kind != "text"), ("guided_regex", regex is not None),
                                   ("guided_choice", choice is not None)) if on]
    if len(given) > 1:
        raise ValueError(f"Give one answer constraint, not {' and '.join(given)}")
    if kind == "json_object":
        return "%json " + json.dumps({"x-guidance": JSON_STYLE, "type": "object"})
    if kind == "json_schema":
        schema = ((fmt or {}).get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise ValueError("response_format json_schema needs a 'schema' object: "
                             "{'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}}")
        return "%json " + json.dumps({"x-guidance": JSON_STYLE, **_closed(schema)})
    if regex is not None:
        require("llguidance", "local")
        import llguidance

        return f"/{llguidance.regex_to_lark(regex)}/"
    if choice is not None:
        if not choice or not all(isinstance(c, str) and c for c in choice):
            raise ValueError(f"guided_choice must be a list of non-empty strings, got {choice!r}")
        return "(" + " | ".join(json.dumps(c, ensure_ascii=False) for c in choice) + ")"
    return None


def _calls_schema(tools: list[Tool], parallel: bool) -> dict[str, Any]:
    """JSON schema of a reply that calls the tools: one call, or (parallel) also a list of calls."""
    one = [{"type": "object", "properties": {"tool": {"const": t.name}, "arguments": _closed(t.parameters)},
            "required": ["tool", "arguments"], "additionalProperties": False} for t in tools]
    call: dict[str, Any] = one[0] if len(one) == 1 else {"anyOf": one}
    if parallel:
        call = {"anyOf": [call, {"type": "array", "items": call, "minItems": 1}]}
    return {"x-guidance": JSON_STYLE, **call}


def _closed(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` on objects that list properties and say nothing."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k in ("properties", "$defs", "definitions") else _closed(v)) for k, v in schema.items()}
    for key in ("properties", "$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            out[key] = {name: _closed(s) for name, s in schema[key].items()}
    if "properties" in schema and not {"additionalProperties", "patternProperties"} & set(schema):
        out["additionalProperties"] = False
    return out


# --- compiled grammars, per model ------------------------------------------------------------------
class Grammars:
    """llguidance's view of one model's tokenizer, and its compiled grammars (cached by text)."""

    def __init__(self, tokenizer: Any, eos: set[int], vocab_size: int) -> None:
        require("llguidance", "local")
        import llguidance

        from plait.local_models.llm.decoding import ChatTokenizer

        self._llg = llguidance
        if isinstance(tokenizer, ChatTokenizer):
            text = tokenizer.tokenizer.to_str()
        elif getattr(tokenizer, "backend_tokenizer", None) is not None:  # a transformers fast tokenizer
            backend = type(tokenizer.backend_tokenizer).from_str(tokenizer.backend_tokenizer.to_str())
            backend.no_padding()  # (on a copy)
            backend.no_truncation()
            text = backend.to_str()
        else:
            raise ValueError(f"Constrained decoding needs a fast (tokenizers-based) tokenizer; "
                             f"{type(tokenizer).__name__} is not one")
        self.vocab_size = vocab_size
        # (a config may name an EOS id outside the vocabulary, which no logit can pick anyway)
        self.tokenizer = llguidance.LLTokenizer(text, n_vocab=vocab_size,
                                                eos_token=sorted(t for t in eos if t < vocab_size))
        self._compiled: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        # For closing an answer within max_tokens: tokens that end things, in order of preference,
        # and what each token costs (made on first use).
        self.closers = [ids[0] for text in _CLOSERS if len(ids := self.tokenizer.tokenize_str(text)) == 1]
        self.quote = self.tokenizer.tokenize_str('"')[:1]
        self._costs: Any = None

    def token_costs(self) -> Any:
        """Per token, how little it adds: twice its bytes, plus one if it starts with a letter or digit
        (so a regex's separator wins over one more letter); special tokens cost the most."""
        if self._costs is None:
            import numpy as np

            t, costs = self.tokenizer, np.full(self.vocab_size, 10**6, dtype=np.int64)
            for i in range(self.vocab_size):
                data = b"" if t.is_special_token(i) else t.decode_bytes([i])
                if data:
                    costs[i] = 2 * len(data) + (data[:1].isalnum())
            self._costs = costs
        return self._costs

    def constraint(self, plan: Plan) -> Constraint:
        """A fresh matcher for ``plan``'s grammar (compiled on first use: ~1 ms; a copy afterwards: ~1 µs)."""
        grammar = plan.grammar or ""
        with self._lock:
            template = self._compiled.get(grammar)
            if template is not None:
                self._compiled.move_to_end(grammar)
        if template is None:
            llg = self._llg.LLMatcher
            template = llg(self.tokenizer, llg.grammar_from_lark(grammar), log_level=0)
            if template.is_error():
                raise ValueError(f"The requested output constraint cannot be enforced: {template.get_error()}")
            with self._lock:
                self._compiled[grammar] = template
                while len(self._compiled) > _CACHE_SIZE:
                    self._compiled.popitem(last=False)
        return Constraint(template.deep_copy(), self, plan.free_text, plan.json)


#: What :meth:`Constraint.closing` prefers outside a string: each ends something or is a short value
#: (inside a string, the quote that ends it).
_CLOSERS = ["}", "]", ",", "0", "false", "null", '"', "{", "[", ".", "1"]


def grammars(engine: Any) -> Grammars:
    """The :class:`Grammars` of a loaded model engine (made on first use: ~0.2 s for a 49k vocabulary)."""
    found = getattr(engine, "_grammars", None)
    if found is None:
        size = int(getattr(engine.config, "vocab_size", 0) or 0) or len(engine.tokenizer)
        found = engine._grammars = Grammars(engine.tokenizer, engine.eos, size)
    return found


class Constraint:
    """One request's grammar state, used by the decode loop (see the module docstring).

    Ending within ``max_tokens``: near the end of the budget, each token the model picks is kept
    only if the answer can still be completed in the tokens left (by :meth:`closing`, a short
    completion: close the string, then the innermost container, else the shortest value). When it
    cannot, that completion is taken instead, so a small model that loops in an array still gives
    a valid answer (finish reason ``length``).
    """

    def __init__(self, matcher: Any, grammars: Grammars, free_text: bool, json: bool = True) -> None:
        import numpy as np

        self.matcher: Any = matcher
        self.grammars = grammars
        self.free_text = free_text
        self.json = json
        self.started = self.closed = False
        self.vocab_size = grammars.vocab_size
        self._bits = np.full((self.vocab_size + 31) // 32, -1, dtype=np.int32)  # the grammar's bitmask
        self._string = (False, False)  # (inside a JSON string, after a backslash) at the end of the answer
        self._ending: list[int] | None = None  # a completion from the current state, when known
        self._near = False  # near the end of the budget: every token is checked
        self._steps = 0

    @property
    def done(self) -> bool:
        """The answer is complete: the grammar allows nothing more, or it was closed to fit the budget."""
        return self.closed or (self.matcher is not None and self.matcher.is_stopped())

    def forced(self, limit: int) -> list[int]:
        """The next tokens the grammar allows no alternative to (at most ``limit``), taken as chosen."""
        if self.matcher is None or limit <= 0:
            return []
        tokens = list(self.matcher.compute_ff_tokens())[:limit]
        if tokens:
            self._consume(tokens)
            self.started = True
            self._ending = None
        return tokens

    def mask(self, logits: torch.Tensor) -> None:
        """Set the logits of the tokens the grammar does not allow next to -inf (in place)."""
        if self.matcher is None:
            return
        import numpy as np
        import torch

        blocked = ~self._allowed(self.matcher).view(bool)
        if logits.device.type == "cpu":
            # numpy in place: torch's threaded element-wise ops cost ~100x more on a busy CPU
            values = logits.numpy()
            np.copyto(values[:self.vocab_size], -np.inf, where=blocked)
            values[self.vocab_size:] = -np.inf  # padding rows of a model's vocabulary
        else:
            logits[:self.vocab_size].masked_fill_(torch.from_numpy(blocked).to(logits.device), float("-inf"))
            logits[self.vocab_size:] = float("-inf")

    def advance(self, token: int, left: int) -> list[int]:
        """Take the sampled token; ``left`` tokens remain in the budget, this one included.

        Returns the tokens that make up the answer from here: ``[token]``, or, when the answer could
        not be completed after ``token`` in the budget, a completion in its place (then :attr:`done`).
        """
        if self.matcher is None:
            return [token]
        first, self.started = not self.started, True
        if first and self.free_text and self.grammars.tokenizer.decode_bytes([token])[:1] not in (b"{", b"["):
            self.matcher = None  # the reply is text, which the grammar leaves free
            return [token]
        self._steps += 1
        if not (self._near or self._steps % 8 == 1):  # far from the end: a check now and then
            self._consume([token])
            self._ending = None
            return [token]
        before, string = self._ending, self._string
        self._consume([token])
        self._ending = self.closing(self.matcher, left - 1)
        if self._ending is not None:
            self._near = self._near or left - 1 <= len(self._ending) + 32
            return [token]
        # 'token' leaves too little room to finish: take a completion from before it instead
        self.matcher.rollback(1)
        self._string = string
        before = before if before is not None else self.closing(self.matcher, left)
        if before is None:  # too little room either way (max_tokens below the shortest answer)
            self._consume([token])
            return [token]
        self._consume(before)
        self.closed = True
        return before

    def closing(self, matcher: Any, limit: int) -> list[int] | None:
        """A short completion of the answer from ``matcher``'s state, or None if it needs over ``limit`` tokens."""
        m, string, out = matcher.deep_copy(), self._string, list[int]()
        while not (m.is_stopped() or m.is_accepting()):
            if len(out) >= limit:
                return None
            tokens = list(m.compute_ff_tokens()) or [self._closer(m, string[0])]
            if not m.consume_tokens(tokens):
                return None
            out += tokens
            string = _scan_string(string, self.grammars.tokenizer.decode_bytes(tokens))
        return out if len(out) <= limit else None

    def _closer(self, matcher: Any, in_string: bool) -> int:
        """The next token of a short completion: the first allowed closer, else the cheapest token."""
        import numpy as np

        matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        for token in [] if not self.json else self.grammars.quote if in_string else self.grammars.closers:
            if (int(self._bits[token >> 5]) >> (token & 31)) & 1:
                return token
        ids = np.flatnonzero(np.unpackbits(self._bits.view(np.uint8), count=self.vocab_size, bitorder="little"))
        return int(ids[np.argmin(self.grammars.token_costs()[ids])])

    def _allowed(self, matcher: Any) -> Any:
        """The grammar's next-token mask as a 0/1 array over the vocabulary."""
        import numpy as np

        matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        return np.unpackbits(self._bits.view(np.uint8), count=self.vocab_size, bitorder="little")

    def _consume(self, tokens: list[int]) -> None:
        if not self.matcher.consume_tokens(tokens):
            raise RuntimeError(f"The output grammar refused token(s) {tokens}: {self.matcher.get_error()}")
        self._string = _scan_string(self._string, self.grammars.tokenizer.decode_bytes(tokens))


def _scan_string(state: tuple[bool, bool], data: bytes) -> tuple[bool, bool]:
    """(inside a JSON string, after a backslash) once ``data`` follows a text in ``state``."""
    inside, escaped = state
    for b in data:
        if escaped:
            escaped = False
        elif inside and b == 0x5C:
            escaped = True
        elif b == 0x22:
            inside = not inside
    return inside, escaped
