"""Grammar engines for constrained decoding, compared on the bundled SmolLM2's 49k-token vocabulary.

For each of xgrammar, llguidance and outlines-core that is installed (pip install them to compare;
plait depends on llguidance only):

- import: importing the engine (xgrammar pulls in torch, transformers and triton);
- setup: building the engine's view of the tokenizer from ``tokenizer.json`` (no transformers);
- compile: turning each JSON schema into a matcher, cold (no cache);
- mask: computing the next-token bitmask, per token, while it walks a valid answer token by token,
  plus applying it to a (49152,) float32 logits vector (the same numpy unpacking for every engine);
- coverage: for each schema feature, whether a valid instance is accepted to the end and an
  invalid one (breaking just that feature) refused. "ignored" means the invalid one got through.

    nice python benchmarks/structured_engines.py

Timings on a shared 2-core machine are noisy; the feature table is not.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OBJ = {"type": "object"}


def _obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {**OBJ, "properties": props, "required": list(props) if required is None else required, **extra}


#: feature -> (schema, a valid instance, an instance that breaks only that feature)
CASES: dict[str, tuple[dict[str, Any], Any, Any]] = {
    "nested $ref": ({"$defs": {"A": _obj({"street": {"type": "string"}, "city": {"type": "string"}})},
                     **_obj({"name": {"type": "string"}, "address": {"$ref": "#/$defs/A"}})},
                    {"name": "Al", "address": {"street": "Main", "city": "Paris"}}, {"name": "Al", "address": {"street": "M"}}),
    "enum": (_obj({"status": {"enum": ["open", "closed"]}}), {"status": "open"}, {"status": "opened"}),
    "const": (_obj({"k": {"const": "v1"}}), {"k": "v1"}, {"k": "v2"}),
    "array minItems/maxItems": (_obj({"t": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2}}),
                                {"t": ["a", "b"]}, {"t": ["a", "b", "c"]}),
    "optional field (Optional[int] = None)": (_obj({"a": {"type": "string"}, "b": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
                                                   ["a"]), {"a": "x"}, {"a": "x", "b": "y"}),
    "integer minimum/maximum": (_obj({"age": {"type": "integer", "minimum": 0, "maximum": 150}}), {"age": 31}, {"age": 151}),
    "number (exponent, negative)": (_obj({"x": {"type": "number"}}), {"x": -2.5e3}, {"x": "2"}),
    "exclusiveMinimum": (_obj({"x": {"type": "number", "exclusiveMinimum": 0}}), {"x": 0.5}, {"x": -1}),
    "multipleOf": (_obj({"x": {"type": "integer", "multipleOf": 5}}), {"x": 15}, {"x": 7}),
    "anyOf objects": (_obj({"pet": {"anyOf": [_obj({"kind": {"const": "cat"}, "lives": {"type": "integer"}}),
                                              _obj({"kind": {"const": "dog"}, "breed": {"type": "string"}})]}}),
                      {"pet": {"kind": "dog", "breed": "pug"}}, {"pet": {"kind": "dog", "lives": 9}}),
    "oneOf": (_obj({"v": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]}}), {"v": True}, {"v": "x"}),
    "allOf": ({"allOf": [_obj({"a": {"type": "integer"}}), _obj({"b": {"type": "integer"}})]}, {"a": 1, "b": 2}, {"a": 1}),
    "type list [string, null]": (_obj({"n": {"type": ["string", "null"]}}), {"n": None}, {"n": 3}),
    "pattern (regex)": (_obj({"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"}}), {"code": "ABC-1234"}, {"code": "AB-1234"}),
    "minLength/maxLength": (_obj({"s": {"type": "string", "minLength": 2, "maxLength": 4}}), {"s": "abc"}, {"s": "abcdef"}),
    "format date": (_obj({"d": {"type": "string", "format": "date"}}), {"d": "2024-01-31"}, {"d": "31/01/2024"}),
    "additionalProperties false": (_obj({"a": {"type": "integer"}}, additionalProperties=False), {"a": 1}, {"a": 1, "z": 2}),
    "uniqueItems": (_obj({"x": {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}}), {"x": [1, 2]}, {"x": [1, 1]}),
    "prefixItems (tuple)": (_obj({"x": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False}}),
                            {"x": [1, "a"]}, {"x": ["a", 1]}),
    "recursive $ref": ({"$defs": {"N": _obj({"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/N"}}})},
                        "$ref": "#/$defs/N"}, {"v": 1, "kids": [{"v": 2, "kids": []}]}, {"v": 1, "kids": [{"v": "2", "kids": []}]}),
    "array of objects, depth 3": (_obj({"items": {"type": "array", "items": _obj({"sku": {"type": "string"}, "dims": _obj(
        {"w": {"type": "number"}, "h": {"type": "number"}})})}}), {"items": [{"sku": "a", "dims": {"w": 1, "h": 2.5}}]},
        {"items": [{"sku": "a", "dims": {"w": 1}}]}),
    "long free string (for timing)": (_obj({"text": {"type": "string"}}), {"text": "The quick brown fox jumps over the lazy dog. " * 8},
                                      {"text": 5}),
}


class _Engine:
    """One engine behind a common interface: compile(schema), start(compiled), mask(), accept(t), accepting()."""

    name = ""

    module = ""

    def __init__(self, tokenizer: Any, vocab: int, eos: int) -> None:
        self.vocab, self.eos = vocab, eos
        self.bits = np.full((vocab + 31) // 32, -1, dtype=np.int32)
        start = time.perf_counter()
        importlib.import_module(self.module)
        self.import_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        self.setup(tokenizer)
        self.setup_ms = (time.perf_counter() - start) * 1e3

    def setup(self, tokenizer: Any) -> None: ...
    def compile(self, schema: dict[str, Any]) -> Any: ...
    def start(self, compiled: Any) -> None: ...
    def mask(self) -> None: ...
    def accept(self, token: int) -> bool: ...
    def accepting(self) -> bool: ...


class XGrammar(_Engine):
    name, module = "xgrammar", "xgrammar"

    def setup(self, tokenizer: Any) -> None:
        import xgrammar as xgr

        vocab = tokenizer.get_vocab(with_added_tokens=True)
        encoded = [""] * self.vocab
        for text, i in vocab.items():
            encoded[i] = text
        self.xgr = xgr
        info = xgr.TokenizerInfo(encoded, xgr.VocabType.BYTE_LEVEL, vocab_size=self.vocab, stop_token_ids=[self.eos])
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self.bitmask = xgr.allocate_token_bitmask(1, self.vocab)

    def compile(self, schema: dict[str, Any]) -> Any:
        return self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=True)

    def start(self, compiled: Any) -> None:
        self.m = self.xgr.GrammarMatcher(compiled)

    def mask(self) -> None:
        self.m.fill_next_token_bitmask(self.bitmask)
        self.bits[:] = self.bitmask[0].numpy()

    def accept(self, token: int) -> bool:
        return bool(self.m.accept_token(token))

    def accepting(self) -> bool:
        return bool(self.m.is_terminated() or self.m.accept_token(self.eos))


class LLGuidance(_Engine):
    name, module = "llguidance", "llguidance"

    def setup(self, tokenizer: Any) -> None:
        import llguidance

        self.llg = llguidance
        self.tok = llguidance.LLTokenizer(tokenizer.to_str(), n_vocab=self.vocab, eos_token=self.eos)

    def compile(self, schema: dict[str, Any]) -> Any:
        m = self.llg.LLMatcher(self.tok, self.llg.LLMatcher.grammar_from_json_schema(schema), log_level=0)
        if m.is_error():
            raise ValueError(m.get_error())
        return m

    def start(self, compiled: Any) -> None:
        self.m = compiled.deep_copy()

    def mask(self) -> None:
        self.m.unsafe_compute_mask_ptr(self.bits.ctypes.data, self.bits.nbytes)

    def accept(self, token: int) -> bool:
        return bool(self.m.consume_token(token))

    def accepting(self) -> bool:
        return bool(self.m.is_accepting())


class OutlinesCore(_Engine):
    name, module = "outlines-core", "outlines_core"

    def setup(self, tokenizer: Any) -> None:
        import outlines_core as oc

        decode = _byte_decoder()
        special = {a["id"] for a in json.loads(tokenizer.to_str())["added_tokens"] if a["special"]}
        tokens: dict[bytes, list[int]] = {}
        for text, i in tokenizer.get_vocab(with_added_tokens=True).items():
            if i != self.eos and i not in special:
                tokens.setdefault(bytes(decode[c] for c in text), []).append(i)
        self.oc, self.vocabulary = oc, oc.Vocabulary(self.eos, tokens)

    def compile(self, schema: dict[str, Any]) -> Any:
        return self.oc.Index(self.oc.json_schema.build_regex_from_schema(json.dumps(schema)), self.vocabulary)

    def start(self, compiled: Any) -> None:
        self.m = self.oc.Guide(compiled)

    def mask(self) -> None:
        self.m.write_mask_into(self.bits.ctypes.data, self.bits.size, 4)

    def accept(self, token: int) -> bool:
        try:
            self.m.advance(token, return_tokens=False)
            return True
        except ValueError:
            return False

    def accepting(self) -> bool:
        return bool(self.m.is_finished())


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: the character standing for each byte."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))], 4) if xs else float("nan")


def measure(engine: _Engine, tokenizer: Any) -> dict[str, Any]:
    compile_ms, first_ms, mask_ms, apply_ms, features = [], [], [], [], {}
    logits = np.random.default_rng(0).standard_normal(engine.vocab).astype(np.float32)
    for feature, (schema, good, bad) in CASES.items():
        try:
            start = time.perf_counter()
            compiled = engine.compile(schema)
            compile_ms.append((time.perf_counter() - start) * 1e3)
        except Exception as e:  # an engine that refuses a schema: reported, not fatal
            features[feature] = f"refused: {str(e).splitlines()[0][:60]}"
            continue
        # a valid instance: every token allowed by the mask and accepted; accepting at the end
        engine.start(compiled)
        ok = True
        for k, token in enumerate(tokenizer.encode(json.dumps(good), add_special_tokens=False).ids):
            t0 = time.perf_counter()
            engine.mask()
            t1 = time.perf_counter()
            allowed = np.unpackbits(engine.bits.view(np.uint8), count=engine.vocab, bitorder="little")
            masked = np.where(allowed == 1, logits, -np.inf)
            t2 = time.perf_counter()
            (first_ms if k == 0 else mask_ms).append((t1 - t0) * 1e3)
            apply_ms.append((t2 - t1) * 1e3)
            if not (allowed[token] and masked[token] > -np.inf and engine.accept(token)):
                ok = False
                break
        ok = ok and engine.accepting()
        # an invalid instance: refused somewhere, or not accepting at the end
        engine.start(compiled)
        refused = False
        for token in tokenizer.encode(json.dumps(bad), add_special_tokens=False).ids:
            engine.mask()
            if not np.unpackbits(engine.bits.view(np.uint8), count=engine.vocab, bitorder="little")[token] \
                    or not engine.accept(token):
                refused = True
                break
        refused = refused or not engine.accepting()
        features[feature] = ("enforced" if ok and refused else "ignored" if ok
                             else "rejects valid" if refused else "broken")
    return {"import_ms": round(engine.import_ms), "setup_ms": round(engine.setup_ms, 1), "compile_ms_median": _pct(compile_ms, 0.5),
            "compile_ms_max": round(max(compile_ms), 2), "first_mask_ms_max": round(max(first_ms), 3),
            "mask_ms_p50": _pct(mask_ms, 0.5), "mask_ms_p95": _pct(mask_ms, 0.95), "mask_ms_max": round(max(mask_ms), 3),
            "apply_ms_p50": _pct(apply_ms, 0.5), "masked_tokens": len(mask_ms) + len(first_ms),
            "enforced": sum(v == "enforced" for v in features.values()), "features": features}


def main() -> None:
    from tokenizers import Tokenizer

    from plait.defaults import smollm2_gguf_path
    from plait.local_models.llm.gguf_cache import cached_gguf_folder

    tokenizer = Tokenizer.from_file(str(cached_gguf_folder(smollm2_gguf_path()) / "tokenizer.json"))
    vocab, eos = tokenizer.get_vocab_size(with_added_tokens=True), tokenizer.token_to_id("<|im_end|>")
    results = {}
    for cls, module in ((XGrammar, "xgrammar"), (LLGuidance, "llguidance"), (OutlinesCore, "outlines_core")):
        if importlib.util.find_spec(module) is None:
            print(f"{cls.name}: not installed, skipped")
            continue
        results[cls.name] = measure(cls(tokenizer, vocab, eos), tokenizer)
    names = list(results)
    print(f"\n{'feature':40}" + "".join(f"{n:>16}" for n in names))
    for feature in CASES:
        print(f"{feature:40}" + "".join(f"{results[n]['features'].get(feature, '-')[:15]:>16}" for n in names))
    for key in ("import_ms", "setup_ms", "compile_ms_median", "compile_ms_max", "first_mask_ms_max", "mask_ms_p50",
                "mask_ms_p95", "mask_ms_max", "apply_ms_p50", "enforced"):
        print(f"{key:40}" + "".join(f"{results[n][key]:>16}" for n in names))
    print(json.dumps({n: {k: v for k, v in r.items() if k != "features"} for n, r in results.items()}))


if __name__ == "__main__":
    main()
