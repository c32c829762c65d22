"""Benchmark plait's embedded text-to-image model: prompt adherence, speed, wrapper overhead.

    python benchmarks/diffusion.py             # 200 held-out captions at 25 steps, 40 at full DDPM
    python benchmarks/diffusion.py --n 20 --n-full 4   # quick

1. Adherence: held-out captions (half new scenes of seen colour-shape pairs, half of the
   colour-shape pairs never seen in training) drawn at 25 steps with the model's few-step
   sampler (Euler ancestral, as saved with it), then at the full 1000-step DDPM schedule;
   each image is scored by the deterministic checker (colour, shape, position, size).
   ``unseen_acc`` is the share of unseen-pair images with colour, shape and position all right.
   The same captions are also drawn with DDIM at 25 steps (``ddim_*`` figures; ``--ddim-n 0`` skips).
2. Speed: seconds per image at 25 steps on this machine's CPU, in batches and one at a time.
3. Wrapper overhead: the same prompts, seeds and batches through ``DiffusersImageModel`` and
   through the diffusers pipeline called directly, alternating which goes first; the images
   must be identical, and the time difference is plait's cost.

Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def adherence(model: Any, scenes: list[Any], steps: int, scheduler: str | None, batch: int,
              guidance: float | None) -> tuple[dict[str, float], float]:
    from plait.local_models.diffusion.shapes_checker import score_many

    params = [{"prompt": s.caption, "seed": i, "steps": steps} for i, s in enumerate(scenes)]
    for p in params:
        if scheduler:
            p["scheduler"] = scheduler
        if guidance is not None:
            p["guidance_scale"] = guidance
    images: list[Any] = []
    start = time.perf_counter()
    for chunk in _chunks(params, batch):
        images += [r.images[0] for r in model.batch(chunk)]
    seconds = time.perf_counter() - start
    captions = [s.caption for s in scenes]
    scores = score_many(images, captions)
    unseen = [i for i, s in enumerate(scenes) if s.unseen]
    scores["unseen_acc"] = score_many([images[i] for i in unseen], [captions[i] for i in unseen])["all_acc"] if unseen else 0.0
    return scores, seconds / len(scenes)


def overhead(model: Any, scenes: list[Any], steps: int, batch: int,
             rounds: int) -> tuple[float, float, float, float, bool]:
    """Median wrapper and direct seconds, overhead % in CPU time and in wall time, identical images."""
    import numpy as np
    import torch

    pipe = model.pipeline
    prompts = [s.caption for s in scenes[:batch]]
    guidance = model._params(prompts[0], {})["guidance_scale"]

    def wrapper() -> list[Any]:
        return [r.images[0] for r in model.batch([{"prompt": p, "seed": i, "steps": steps} for i, p in enumerate(prompts)])]

    def direct() -> list[Any]:
        pipe.scheduler = model._scheduler_for(None)
        gens = [torch.Generator().manual_seed(i) for i in range(len(prompts))]
        return list(pipe(prompt=prompts, num_inference_steps=steps, guidance_scale=guidance, generator=gens).images)

    wall: dict[str, list[float]] = {"wrapper": [], "direct": []}
    cpu: dict[str, list[float]] = {"wrapper": [], "direct": []}
    same = True
    for r in range(rounds):
        order = [("wrapper", wrapper), ("direct", direct)]
        if r % 2:
            order.reverse()
        out = {}
        for name, fn in order:
            t0, c0 = time.perf_counter(), time.process_time()
            out[name] = fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        same = same and all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(out["wrapper"], out["direct"], strict=True))
    # Medians: on a shared machine single rounds swing with other processes' load. CPU time of this
    # process is the steadier measure; wall time is reported beside it.
    med = statistics.median
    pct_cpu = 100.0 * (med(cpu["wrapper"]) - med(cpu["direct"])) / med(cpu["direct"])
    pct_wall = 100.0 * (med(wall["wrapper"]) - med(wall["direct"])) / med(wall["direct"])
    return med(wall["wrapper"]), med(wall["direct"]), pct_cpu, pct_wall, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="held-out captions at 25 steps (default 200)")
    parser.add_argument("--n-full", type=int, default=40,
                        help="captions at the full DDPM schedule (1000 steps, ~40x slower; default 40)")
    parser.add_argument("--ddim-n", type=int, default=None, help="captions drawn with DDIM too (default: --n)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--scheduler", default=None, help="few-step sampler (default: the model's own, Euler ancestral)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's, 3.0)")
    parser.add_argument("--batch", type=int, default=25, help="images per pipeline call")
    parser.add_argument("--rounds", type=int, default=6, help="wrapper/direct alternations for the overhead figure")
    parser.add_argument("--overhead-batch", type=int, default=10, help="images per call in the overhead rounds")
    parser.add_argument("--model", default=None, help="pipeline folder (default: the bundled plait-shapes)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()

    import torch

    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel
    from plait.local_models.diffusion.shapes_data import benchmark_scenes

    if args.threads:
        torch.set_num_threads(args.threads)
    model = DiffusersImageModel(args.model, device="cpu")
    _ = model.pipeline
    scenes = benchmark_scenes(args.n)
    model.invoke({"prompt": scenes[0].caption, "seed": 0, "steps": 2})  # warm up

    few, s_per_image = adherence(model, scenes, args.steps, args.scheduler, args.batch, args.guidance)
    ddim_n = args.n if args.ddim_n is None else min(args.ddim_n, args.n)
    ddim, s_ddim = adherence(model, scenes[:ddim_n], args.steps, "ddim", args.batch, args.guidance) if ddim_n else ({}, 0.0)
    t0 = time.perf_counter()
    singles = min(4, args.n)
    for i in range(singles):
        model.invoke({"prompt": scenes[i].caption, "seed": i, "steps": args.steps})
    s_single = (time.perf_counter() - t0) / singles
    full_scenes = benchmark_scenes(args.n_full) if args.n_full else []
    full, s_full = adherence(model, full_scenes, 1000, "ddpm", args.batch, args.guidance) if full_scenes else ({}, 0.0)
    w, d, pct, pct_wall, same = overhead(model, scenes, args.steps, min(args.overhead_batch, args.n), args.rounds)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"plait-shapes, CPU with {torch.get_num_threads()} torch threads, load average {load}")
    print(f"{'run':<28}{'n':>5}{'colour':>8}{'shape':>8}{'position':>10}{'size':>7}{'unseen':>8}{'s/img':>8}")
    print(f"{f'{args.steps} steps (few-step sampler)':<28}{args.n:>5}{few['color_acc']:>8.3f}{few['shape_acc']:>8.3f}"
          f"{few['position_acc']:>10.3f}{few['size_acc']:>7.3f}{few['unseen_acc']:>8.3f}{s_per_image:>8.3f}")
    if ddim:
        print(f"{f'{args.steps} steps (DDIM)':<28}{ddim_n:>5}{ddim['color_acc']:>8.3f}{ddim['shape_acc']:>8.3f}"
              f"{ddim['position_acc']:>10.3f}{ddim['size_acc']:>7.3f}{ddim['unseen_acc']:>8.3f}{s_ddim:>8.3f}")
    if full:
        print(f"{'1000 steps (DDPM)':<28}{args.n_full:>5}{full['color_acc']:>8.3f}{full['shape_acc']:>8.3f}"
              f"{full['position_acc']:>10.3f}{full['size_acc']:>7.3f}{full['unseen_acc']:>8.3f}{s_full:>8.3f}")
    print(f"one image at a time: {s_single:.3f} s/image at {args.steps} steps")
    print(f"wrapper {w:.2f}s vs diffusers direct {d:.2f}s (medians of {args.rounds} rounds of "
          f"{min(args.overhead_batch, args.n)} images): overhead {pct:+.2f}% CPU time, {pct_wall:+.2f}% wall "
          f"(identical images: {same})")
    targets = {"color": few["color_acc"] >= 0.95, "shape": few["shape_acc"] >= 0.90,
               "position": few["position_acc"] >= 0.90, "unseen": few["unseen_acc"] >= 0.80,
               "speed": s_per_image <= 1.0, "overhead": pct < 2.0}
    print("targets met: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in targets.items()))
    figures = {"color_acc": round(few["color_acc"], 4), "shape_acc": round(few["shape_acc"], 4),
               "position_acc": round(few["position_acc"], 4), "size_acc": round(few["size_acc"], 4),
               "unseen_acc": round(few["unseen_acc"], 4), "n": args.n, "steps": args.steps,
               "full_color_acc": round(full.get("color_acc", 0.0), 4), "full_shape_acc": round(full.get("shape_acc", 0.0), 4),
               "full_position_acc": round(full.get("position_acc", 0.0), 4), "full_unseen_acc": round(full.get("unseen_acc", 0.0), 4),
               "ddim_color_acc": round(ddim.get("color_acc", 0.0), 4), "ddim_shape_acc": round(ddim.get("shape_acc", 0.0), 4),
               "ddim_position_acc": round(ddim.get("position_acc", 0.0), 4),
               "ddim_unseen_acc": round(ddim.get("unseen_acc", 0.0), 4), "ddim_n": ddim_n,
               "n_full": args.n_full, "s_per_image": round(s_per_image, 4), "s_per_image_single": round(s_single, 4),
               "s_per_image_full": round(s_full, 4), "wrapper_overhead_pct": round(pct, 3), "wrapper_overhead_wall_pct": round(pct_wall, 3),
               "identical_images": same,
               "threads": torch.get_num_threads(), "load_average": load}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
