"""The cost of ``n`` choices: one decode step of the bundled local model with 1, 2, 4 and 8 rows.

``n`` choices of one prompt run as one batched decode (the prompt once, then a ``(rows, 1)`` step
per token; see docs/models.md). This measures ``LlamaDecoder.step`` after ``fork(rows)``, the rows
taking turns step by step so a shared machine's changing load hits them alike, and reports the
median step time per row count and per generated token (step time / rows). Prints a table; the
last line is one JSON object.

    python benchmarks/decode_choices.py                 # 200 steps each
    python benchmarks/decode_choices.py --steps 50 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    from plait.local_models.llm.transformers_chat import TransformersChatModel

    if args.threads:
        torch.set_num_threads(args.threads)
    # one engine per row count (the prepared weights are memory-mapped once by the OS)
    engines = {n: TransformersChatModel()._engine.load() for n in args.rows}
    prompt = engines[args.rows[0]].render([])  # the chat template's generation prompt alone
    prompt = prompt or [1]
    times: dict[int, list[float]] = {n: [] for n in args.rows}
    with torch.inference_mode():
        tokens = {}
        for n, engine in engines.items():
            engine.decoder.start(len(prompt) + args.steps + 1)
            engine.decoder.step(torch.tensor(prompt))
            if n > 1:
                engine.decoder.fork(n)
            tokens[n] = torch.full((n, 1), 42) if n > 1 else torch.tensor([42])
        for _ in range(args.steps):
            for n, engine in engines.items():
                t0 = time.perf_counter()
                engine.decoder.step(tokens[n])
                times[n].append(time.perf_counter() - t0)
    step = {n: statistics.median(v) * 1e3 for n, v in times.items()}
    print(f"{'rows':>4}  {'step ms':>8}  {'ms/token':>8}  {'vs 1 row':>8}")
    for n in args.rows:
        print(f"{n:>4}  {step[n]:>8.2f}  {step[n] / n:>8.2f}  {step[n] / step[args.rows[0]]:>8.2f}")
    print(json.dumps({"step_ms": {str(n): round(v, 3) for n, v in step.items()},
                      "ms_per_token": {str(n): round(v / n, 3) for n, v in step.items()},
                      "threads": torch.get_num_threads(), "steps": args.steps}))


if __name__ == "__main__":
    main()
