"""Local generation speed: plait's TransformersChatModel vs transformers ``generate`` (vs llama.cpp).

Greedy decoding of ``--tokens`` new tokens (default 128) from a fixed chat prompt with the default
local model (the bundled SmolLM2-135M-Instruct Q4_1 GGUF), all in one run on the same weights:

- plait: ``TransformersChatModel`` as a user gets it (``quantize="auto"``: on a CPU the GGUF's 4-bit
  weights run through torch's int4 kernel), streamed; tokens/s over the whole call, prefill included.
- plait float32: the same with ``quantize="none"`` (the dequantized weights in float32), for reference.
- transformers: ``AutoModelForCausalLM.from_pretrained`` on plait's dequantized copy of the same GGUF
  (float32 on CPU, bfloat16 on CUDA) and ``model.generate(max_new_tokens=N, min_new_tokens=N)``.
- llama.cpp: ``llama_cpp.Llama`` on the GGUF file itself, when ``llama-cpp-python`` is installed
  (``make bench-llamacpp`` builds it and runs this script with it), with torch's thread count; its
  prompt cache is reset before each call, as plait starts each request afresh. Beside it, plait's
  ``LlamaCppChatModel``: llama.cpp's forward pass under plait's own loop (sampling, grammar, stops).

``load_s`` is a second load (cache warm) in a fresh Python process, interpreter start and ``import
torch`` included; ``load_call_s`` is its ``load()`` call alone, after ``import torch``. Time to
first token (TTFT) uses a chat prompt of about 50 tokens. Each figure is the median of ``--repeats``
rounds after a warm-up round; within a round the engines take turns, so a shared
machine's changing load hits them alike. Prints a table; the last line is one JSON object.

    python benchmarks/local_generation.py            # CPU or CUDA (auto)
    python benchmarks/local_generation.py --quick    # 32 tokens, 1 repeat
    python benchmarks/local_generation.py --device cpu --threads 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
SHORT_PROMPT = "In two sentences, what does a lighthouse keeper do all day, and why does it matter?"


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def plait_run(model: Any, prompt: str, tokens: int) -> tuple[float, int, str]:
    """Stream one greedy reply; returns (seconds to first chunk, completion tokens, text)."""
    start, first, text, usage = time.perf_counter(), None, [], None
    for chunk in model.stream(prompt, max_tokens=tokens, temperature=0.0):
        if first is None:
            first = time.perf_counter() - start
        text.append(chunk.content)
        usage = chunk.usage or usage
    return first or 0.0, usage.completion_tokens if usage else 0, "".join(text)


def llama_run(llm: Any, ids: list[int], tokens: int) -> tuple[float, int]:
    """One greedy llama.cpp completion: (seconds to the first streamed token, tokens made)."""
    llm.reset()  # no prompt cache from the last call: every engine starts each request afresh
    start, first, produced = time.perf_counter(), None, 0
    for chunk in llm.create_completion(ids, max_tokens=tokens, temperature=0.0, stream=True):
        first = first if first is not None else time.perf_counter() - start
        produced += bool(chunk["choices"][0]["text"]) or chunk["choices"][0]["finish_reason"] is None
    return first or 0.0, produced


def fresh_process_load(spec: str, device: str, repeats: int) -> tuple[float, float]:
    """Medians of a second load in a new Python process (cache warm): (whole process, ``load()`` alone).

    The whole process is interpreter start, ``import torch`` (about a second on 2 cores) and plait,
    and ``load()``: what a user waits for when ``plait chat`` starts.
    """
    code = ("import torch, time; from plait.local_models.llm.transformers_chat import TransformersChatModel as M; "
            f"m = M({spec!r}, device={device!r}); s = time.perf_counter(); m.load(); print(time.perf_counter() - s)")
    whole, calls = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        whole.append(time.perf_counter() - start)
        calls.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(whole), statistics.median(calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--model", default=None, help="model spec (default: the bundled SmolLM2 GGUF)")
    parser.add_argument("--quick", action="store_true", help="32 tokens, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.repeats = 32, 1

    import torch
    from transformers import AutoModelForCausalLM

    from plait.defaults import smollm2_gguf_path
    from plait.local_models.llm.gguf_cache import cached_gguf_folder, is_cached
    from plait.local_models.llm.transformers_chat import TransformersChatModel
    from plait.messages import UserMessage

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = args.model or smollm2_gguf_path()
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    rows: list[tuple[str, str, str, str]] = []

    # 1. load: plait as a user gets it (the first load converts the GGUF once), plait float32, transformers
    was_cached = not spec.endswith(".gguf") or is_cached(spec)
    start = time.perf_counter()
    plait = TransformersChatModel(spec, device=device).load()
    in_process_load_s = time.perf_counter() - start
    load_s, load_call_s = fresh_process_load(spec, device, args.repeats)
    engine = plait._engine
    dense = TransformersChatModel(spec, device=device, quantize="none").load() if engine.quantized else None
    folder = str(cached_gguf_folder(spec)) if spec.endswith(".gguf") else spec
    hf_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    hf: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=hf_dtype)
    hf = hf.to(device).eval()
    n = args.tokens
    prompt_ids = engine.render([UserMessage(content=PROMPT)])
    short_ids = engine.render([UserMessage(content=SHORT_PROMPT)])
    ids = torch.tensor([prompt_ids], device=device)
    short = torch.tensor([short_ids], device=device)

    def hf_generate(x: Any, k: int) -> Any:
        with torch.inference_mode():
            return hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=k, min_new_tokens=k,
                               do_sample=False, pad_token_id=engine.tokenizer.eos_token_id)

    # 2. time them in turns (plait, plait float32, transformers, again...), so that a change in the load
    #    of a shared machine hits all of them alike; medians after one warm-up round
    runs: dict[str, Callable[[], Any]] = {
        "plait": lambda: plait_run(plait, PROMPT, n), "hf": lambda: hf_generate(ids, n),
        "plait_ttft": lambda: plait_run(plait, SHORT_PROMPT, 1), "hf_ttft": lambda: hf_generate(short, 1)}
    if dense is not None:
        runs["dense"] = lambda: plait_run(dense, PROMPT, n)
        runs["dense_ttft"] = lambda: plait_run(dense, SHORT_PROMPT, 1)
    llm = None
    if importlib.util.find_spec("llama_cpp") is not None and spec.endswith(".gguf"):
        from llama_cpp import Llama

        from plait.local_models.llm.llamacpp_chat import LlamaCppChatModel

        llm = Llama(model_path=spec, n_ctx=1024, n_threads=torch.get_num_threads(), verbose=False,
                    n_gpu_layers=-1 if device.startswith("cuda") else 0)
        on_llamacpp = LlamaCppChatModel(spec, n_gpu_layers=-1 if device.startswith("cuda") else 0).load()
        runs["llamacpp"] = lambda: llama_run(llm, prompt_ids, n)
        runs["llamacpp_ttft"] = lambda: llama_run(llm, short_ids, 1)
        runs["plait_llamacpp"] = lambda: plait_run(on_llamacpp, PROMPT, n)
        runs["plait_llamacpp_ttft"] = lambda: plait_run(on_llamacpp, SHORT_PROMPT, 1)
    times: dict[str, list[float]] = {k: [] for k in runs}
    results: dict[str, Any] = {}
    for round_ in range(args.repeats + 1):
        for name, fn in runs.items():
            for _ in range(2 if name.endswith("ttft") else 1):
                t0 = time.perf_counter()
                results[name] = fn()
                elapsed = time.perf_counter() - t0
                if name in ("plait_ttft", "dense_ttft", "llamacpp_ttft", "plait_llamacpp_ttft"):
                    elapsed = results[name][0]  # time to the first streamed chunk
                if round_:
                    times[name].append(elapsed)
    med = {k: statistics.median(v) for k, v in times.items()}
    produced, plait_text = results["plait"][1], results["plait"][2]
    plait_tok_s = produced / med["plait"]
    ttft_s = med["plait_ttft"]
    mode = "int4 (GGUF 4-bit weights), bfloat16 compute" if engine.quantized else str(engine.decoder.dtype)
    rows.append(("plait", mode, f"{plait_tok_s:.1f}", f"{ttft_s * 1e3:.0f}"))
    plait_fp32_tok_s = None
    if dense is not None:
        plait_fp32_tok_s = results["dense"][1] / med["dense"]
        rows.append(("plait", f"quantize='none' ({dense._engine.decoder.dtype})", f"{plait_fp32_tok_s:.1f}",
                     f"{med['dense_ttft'] * 1e3:.0f}"))
    hf_tok_s = n / med["hf"]
    hf_ttft = med["hf_ttft"]
    rows.append(("transformers generate", str(hf_dtype).replace("torch.", ""), f"{hf_tok_s:.1f}",
                 f"{hf_ttft * 1e3:.0f}"))
    hf_text = engine.tokenizer.decode(results["hf"][0, ids.shape[1]:], skip_special_tokens=True)
    same_chars = next((i for i, (a, b) in enumerate(zip(plait_text, hf_text, strict=False)) if a != b),
                      min(len(plait_text), len(hf_text)))

    # 4. llama.cpp, when installed: raw, and under plait's loop
    llamacpp_tok_s = llamacpp_ttft = plait_llamacpp_tok_s = plait_llamacpp_ttft = None
    if llm is not None:
        llamacpp_tok_s, llamacpp_ttft = results["llamacpp"][1] / med["llamacpp"], med["llamacpp_ttft"]
        rows.append(("llama.cpp", "GGUF Q4_1", f"{llamacpp_tok_s:.1f}", f"{llamacpp_ttft * 1e3:.0f}"))
        plait_llamacpp_tok_s = results["plait_llamacpp"][1] / med["plait_llamacpp"]
        plait_llamacpp_ttft = med["plait_llamacpp_ttft"]
        rows.append(("plait on llama.cpp", "LlamaCppChatModel (llama.cpp forward pass)",
                     f"{plait_llamacpp_tok_s:.1f}", f"{plait_llamacpp_ttft * 1e3:.0f}"))
    else:
        rows.append(("llama.cpp", "not installed (make bench-llamacpp)", "-", "-"))

    print(f"\nGreedy generation, {n} new tokens, prompt {len(prompt_ids)} tokens; TTFT prompt "
          f"{len(short_ids)} tokens; device {device}, torch threads {torch.get_num_threads()}")
    print(f"plait load in this process: {in_process_load_s:.2f} s "
          f"({'cached' if was_cached else 'first load, GGUF converted'}); second load in a fresh process: "
          f"{load_s:.2f} s in all, of which load() after import torch {load_call_s:.2f} s")
    print(f"{'engine':<24}{'weights':<48}{'tokens/s':>10}{'TTFT ms':>10}")
    for row in rows:
        print(f"{row[0]:<24}{row[1]:<48}{row[2]:>10}{row[3]:>10}")
    print(f"plait produced {produced} tokens; its greedy text matches transformers' for the first "
          f"{same_chars} characters")
    result = {
        "device": device, "threads": torch.get_num_threads(), "new_tokens": n, "plait_tokens": produced,
        "prompt_tokens": len(prompt_ids), "ttft_prompt_tokens": len(short_ids),
        "plait_tok_s": round(plait_tok_s, 2), "plait_fp32_tok_s": plait_fp32_tok_s and round(plait_fp32_tok_s, 2),
        "hf_tok_s": round(hf_tok_s, 2), "llamacpp_tok_s": llamacpp_tok_s and round(llamacpp_tok_s, 2),
        "ratio_vs_hf": round(plait_tok_s / hf_tok_s, 2),
        "ratio_vs_llamacpp": round(plait_tok_s / llamacpp_tok_s, 2) if llamacpp_tok_s else None,
        "llamacpp_ttft_ms": llamacpp_ttft and round(llamacpp_ttft * 1e3, 1),
        "plait_llamacpp_tok_s": plait_llamacpp_tok_s and round(plait_llamacpp_tok_s, 2),
        "plait_llamacpp_ttft_ms": plait_llamacpp_ttft and round(plait_llamacpp_ttft * 1e3, 1),
        "ttft_ms": round(ttft_s * 1e3, 1), "hf_ttft_ms": round(hf_ttft * 1e3, 1),
        "plait_quantized": engine.quantized, "same_text_chars_as_hf": same_chars, "load_s": round(load_s, 2),
        "load_call_s": round(load_call_s, 2), "first_load_converted": not was_cached,
        "logits_kernel": "q8_kernel" if getattr(getattr(engine.decoder, "lm_head", None), "kernel", None) is not None
        else "torch",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
