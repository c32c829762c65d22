"""Train plait's own text-to-image model on procedural shape scenes.

    python -m plait.local_models.diffusion.train_shapes --seed 0 --out DIR --max-seconds 300 --workers 3   # the shipped model (GPU)
    python -m plait.local_models.diffusion.train_shapes --seed 0 --out DIR --small    # fits an hour on 2 CPU cores

What it does, in order:

1. encode every caption the scene grammar can produce with the bundled MiniLM, once (token
   states + attention mask; cached to ``--caption-cache`` so a machine without the encoder can
   train from the cache);
2. draw batches of scenes from ``(seed, step)`` alone (worker processes render ahead), so a run
   is reproducible whatever the number of workers;
3. DDPM objective (epsilon prediction, cosine schedule), the caption dropped to "" 10% of the time
   for classifier-free guidance; AdamW, bf16 autocast (CUDA, or a CPU with native bf16), an EMA of the weights;
4. save a :class:`~plait.local_models.diffusion.shapes_pipeline.PlaitShapesPipeline` (EMA weights, fp16
   safetensors) with ``save_pretrained``, plus ``train_log.jsonl``;
5. optionally (``--eval N``) score N held-out scenes with the checker under several samplers.

Stops at ``--steps`` or after ``--max-seconds`` of training, whichever comes first.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class TrainConfig:
    seed: int = 0
    out: str = "plait-shapes"
    steps: int = 100_000
    max_seconds: float = 3600.0
    batch: int = 256
    lr: float = 4e-4
    warmup: int = 200
    channels: tuple[int, ...] = (64, 128, 128)
    layers: int = 1
    heads: int = 4
    size: int = 32
    patch: int = 1
    train_timesteps: int = 1000
    prediction: str = "epsilon"
    cond_drop: float = 0.1
    ema: float = 0.995
    workers: int = 0
    device: str = "auto"
    caption_cache: str = ""
    init: str = ""  # start from this saved pipeline's UNet (to continue training)
    cosine: bool = True  # decay the learning rate to 0 (cosine) by --steps or --max-seconds, whichever ends first
    eval: int = 0
    log_every: int = 100


#: The shipped model: the defaults with ``--max-seconds 300`` on one H100 (four runs sharing it; step 1417).
#: ``--small``: an older v-prediction recipe cut down to finish within an hour on 2 CPU cores (weaker model).
SMALL = {"channels": (32, 64, 64), "layers": 1, "patch": 2, "batch": 64, "max_seconds": 3300.0, "ema": 0.998,
         "lr": 5e-4, "prediction": "v_prediction", "cosine": False}


def make_unet(cfg: TrainConfig) -> Any:
    from diffusers import UNet2DConditionModel

    levels = len(cfg.channels)
    return UNet2DConditionModel(
        sample_size=cfg.size // cfg.patch, in_channels=3 * cfg.patch**2, out_channels=3 * cfg.patch**2,
        block_out_channels=cfg.channels, layers_per_block=cfg.layers,
        # Self- and cross-attention only below full resolution: that is where it is cheap.
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        cross_attention_dim=384, attention_head_dim=cfg.heads,  # diffusers reads this as the number of heads
        norm_num_groups=min(32, cfg.channels[0] // 2))


def make_scheduler(cfg: TrainConfig) -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=cfg.train_timesteps, beta_schedule="squaredcos_cap_v2",
                         prediction_type=cfg.prediction, clip_sample=False)


def record_clip_sample(config_file: Path, prediction: str) -> None:
    """Write into a saved scheduler config how DDIM/DDPM swapped in by name clip their x0 estimates.

    Euler ancestral has no such option, so diffusers leaves it out when saving, and a scheduler built
    from that config would take its own default (DDIM, DDPM: ``clip_sample=True``, range 1).

    - v-prediction: off. Clipping ruins its samples at high noise (25-step DDIM: colour accuracy
      0.75 -> 1.0 on 16 held-out captions once it is off).
    - epsilon: on, to [-2, 2]. Its x0 estimate at the first of 1000 DDPM steps is its error times
      sigma 20,291 (see :func:`sampling_scheduler`), and 1000-step DDPM without clipping drew noise.
      Clipping to [-1, 1] bent the 25-step DDIM paths instead (40 held-out captions: shape 0.775,
      position 0.75); to [-2, 2] only catches the blow-up (shape 0.90, position 0.975, and DDPM
      10 of 10 right).
    """
    config = json.loads(config_file.read_text())
    config["clip_sample"] = prediction != "v_prediction"
    if config["clip_sample"]:
        config["clip_sample_range"] = 2.0
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def sampling_scheduler(train_scheduler: Any) -> Any:
    """The few-step default saved with the pipeline: Euler ancestral.

    Measured on the earlier v-prediction model (held-out captions, 25 steps, guidance 3): shape
    accuracy 0.67 with Euler ancestral against 0.53 with DPM-Solver++ 2M (and 0.675 with 1000-step
    DDPM). On the shipped epsilon model (200 captions): Euler ancestral shape 1.00, DDIM 0.91.

    An epsilon-prediction model starts from t=960 instead ("leading" timesteps). The cosine schedule's
    last step has alpha_bar = 2.4e-9 (sigma 20,291), and the x0 an epsilon model implies there is its
    error times that sigma. Starting at t=999 turned four GPU-trained epsilon models' images into noise
    (colour 0.1-0.24 on 200 held-out captions); at t=960 (sigma 16) the same weights drew the scenes.
    A v-prediction model has no such blow-up, and trailing timesteps start it from pure noise.
    """
    from diffusers import EulerAncestralDiscreteScheduler

    spacing = sampling_spacing(train_scheduler.config.prediction_type)
    return EulerAncestralDiscreteScheduler.from_config(train_scheduler.config, timestep_spacing=spacing)


def sampling_spacing(prediction: str) -> str:
    """Timestep spacing of the saved sampler: "leading" for epsilon models (first step t=960, see
    :func:`sampling_scheduler`), "trailing" for v-prediction (first step t=999, pure noise)."""
    return "trailing" if prediction == "v_prediction" else "leading"


# --- captions --------------------------------------------------------------------------------------
def caption_table(cache: str = "") -> tuple[list[str], Any, Any]:
    """All captions plus "" (index 0, the unconditional prompt), their token states and masks."""
    from plait.local_models.diffusion.shapes_data import all_captions

    captions = [""] + all_captions()
    if cache and os.path.exists(cache):
        from safetensors.torch import load_file

        data = load_file(cache)
        stored = json.loads(Path(cache + ".json").read_text())
        if stored == captions:
            return captions, data["hidden"], data["mask"]
        print(f"caption cache {cache} is for other captions; re-encoding")
    from plait.local_models.diffusion.shapes_pipeline import encode_text, load_bundled_text_encoder

    tokenizer, encoder = load_bundled_text_encoder()
    hidden, mask = encode_text(tokenizer, encoder, captions)
    hidden, mask = hidden.float().contiguous(), mask.contiguous()
    if cache:
        from safetensors.torch import save_file

        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        save_file({"hidden": hidden, "mask": mask}, cache)
        Path(cache + ".json").write_text(json.dumps(captions))
    return captions, hidden, mask


# --- data ------------------------------------------------------------------------------------------
def _make_batch(args: tuple[int, int, int, int]) -> tuple[np.ndarray, list[str]]:
    from plait.local_models.diffusion.shapes_data import render, sample_scenes

    seed, step, batch, size = args
    scenes = sample_scenes(batch, seed=seed * 1_000_003 + step, split="train", size=size)
    return render(scenes, size), [s.caption for s in scenes]


def batches(cfg: TrainConfig, start: int = 0) -> Iterator[tuple[np.ndarray, list[str]]]:
    """Batches for steps start, start+1, ... Each depends only on (seed, step)."""
    jobs = ((cfg.seed, step, cfg.batch, cfg.size) for step in range(start, cfg.steps))
    if cfg.workers <= 0:
        yield from map(_make_batch, jobs)
        return
    with mp.get_context("spawn").Pool(cfg.workers) as pool:
        yield from pool.imap(_make_batch, jobs, chunksize=2)


# --- training --------------------------------------------------------------------------------------
def pick_device(name: str) -> str:
    import torch

    if name != "auto":
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def train(cfg: TrainConfig) -> Path:
    import torch
    import torch.nn.functional as F

    from plait.local_models.diffusion.shapes_pipeline import PlaitShapesPipeline

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.backends.cudnn.benchmark = True
    captions, hidden, mask = caption_table(cfg.caption_cache)
    index = {c: i for i, c in enumerate(captions)}
    hidden, mask = hidden.to(device), mask.to(device)
    if cfg.init:
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(cfg.init, subfolder="unet", dtype=torch.float32)
    else:
        unet = make_unet(cfg)
    unet = unet.to(device).train()
    scheduler = make_scheduler(cfg)
    alphas = scheduler.alphas_cumprod.to(device)
    params = [p for p in unet.parameters() if p.requires_grad]
    ema = [p.detach().clone().float() for p in params]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    # bf16 autocast on CUDA, and on CPUs that compute bf16 natively (AMX / AVX512-BF16: ~1.5x fp32 here)
    if device.startswith("cuda"):
        autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    else:
        from plait.local_models.embeddings.sentence_transformer import cpu_has_bf16

        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_has_bf16())
    n_params = sum(p.numel() for p in params)
    print(f"training {n_params / 1e6:.2f}M parameters on {device}, batch {cfg.batch}", flush=True)
    log = (out / "train_log.jsonl").open("w")
    log.write(json.dumps({"config": asdict(cfg), "parameters": n_params, "device": device}) + "\n")
    start, trained, running = time.perf_counter(), 0, 0.0
    for step, (images, texts) in enumerate(batches(cfg)):
        if time.perf_counter() - start > cfg.max_seconds:
            break
        trained = step + 1
        # 1. images to [-1, 1], then pixel-unshuffle into the unet's space
        x0 = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
        x0 = F.pixel_unshuffle(x0, cfg.patch)
        # 2. text: caption token states, dropped to "" for a random 10% (classifier-free guidance)
        ids = torch.tensor([index[t] for t in texts], device=device)
        drop = torch.rand(len(ids), generator=gen, device=device) < cfg.cond_drop
        ids = torch.where(drop, torch.zeros_like(ids), ids)
        # 3. noise at a random timestep
        noise = torch.randn(x0.shape, generator=gen, device=device)
        t = torch.randint(0, cfg.train_timesteps, (len(ids),), generator=gen, device=device)
        a = alphas[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        target = a.sqrt() * noise - (1 - a).sqrt() * x0 if cfg.prediction == "v_prediction" else noise
        # 4. predict, regress, step; the learning rate warms up linearly (then optionally decays)
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
        if cfg.cosine:  # progress by steps or by time, whichever is further on, so a timed run anneals too
            progress = min(1.0, max(step / cfg.steps, (time.perf_counter() - start) / cfg.max_seconds))
            lr *= 0.5 * (1 + math.cos(math.pi * progress))
        for group in opt.param_groups:
            group["lr"] = lr
        with autocast:
            pred = unet(x_t, t, encoder_hidden_states=hidden[ids], encoder_attention_mask=mask[ids]).sample
        loss = F.mse_loss(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        # 5. exponential moving average of the weights (what gets saved)
        decay = min(cfg.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach().float() for p in params], 1 - decay)
        running = loss.item() if step == 0 else 0.98 * running + 0.02 * loss.item()
        if step % cfg.log_every == 0:
            line = {"step": step, "loss": round(running, 5), "seconds": round(time.perf_counter() - start, 1)}
            print(json.dumps(line), flush=True)
            log.write(json.dumps(line) + "\n")
            log.flush()
    seconds = time.perf_counter() - start
    done = {"done_steps": trained, "seconds": round(seconds, 1), "samples": trained * cfg.batch, "final_loss": round(running, 5)}
    print(json.dumps(done), flush=True)
    log.write(json.dumps(done) + "\n")
    log.close()
    # 6. save the EMA weights in half precision (loaders upcast with dtype=torch.float32)
    with torch.no_grad():
        for p, e in zip(params, ema, strict=True):
            p.copy_(e)
    unet = unet.to("cpu", torch.float16).eval()
    pipe = PlaitShapesPipeline(unet=unet, scheduler=sampling_scheduler(scheduler), patch_size=cfg.patch)
    pipe.save_pretrained(out, safe_serialization=True)
    record_clip_sample(Path(out) / "scheduler" / "scheduler_config.json", cfg.prediction)
    print(f"saved pipeline to {out}", flush=True)
    return out


# --- evaluation ------------------------------------------------------------------------------------
SAMPLERS: dict[str, tuple[str, dict[str, Any], int]] = {
    "dpm++2m-trailing-25": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "timestep_spacing": "trailing"}, 25),
    "dpm++2m-linspace-25": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "timestep_spacing": "linspace"}, 25),
    "ddim-trailing-25": ("DDIMScheduler", {"timestep_spacing": "trailing"}, 25),
    "ddim-leading-25": ("DDIMScheduler", {"timestep_spacing": "leading"}, 25),
    "euler-trailing-25": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}, 25),
    "unipc-trailing-25": ("UniPCMultistepScheduler", {"timestep_spacing": "trailing"}, 25),
    "dpm++2m-trailing-10": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "timestep_spacing": "trailing"}, 10),
    "euler_a-trailing-25": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}, 25),
    "euler_a-leading-25": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "leading"}, 25),
    "dpm++sde-trailing-25": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "timestep_spacing": "trailing"}, 25),
    "ddpm-trailing-25": ("DDPMScheduler", {"timestep_spacing": "trailing"}, 25),
    "ddpm-1000": ("DDPMScheduler", {}, 1000),
}


def default_samplers(prediction: str) -> list[str]:
    """The samplers ``evaluate`` scores when none are named: the one saved with the pipeline first.

    An epsilon model skips the ``*-trailing-*`` entries: they start at t=999, where its x0 estimate
    is its error times sigma 20,291 (see :func:`sampling_scheduler`), so they score noise.
    """
    saved = f"euler_a-{sampling_spacing(prediction)}-25"
    rest = [n for n in SAMPLERS if n != saved and (prediction == "v_prediction" or "trailing" not in n)]
    return [saved, *rest]


def evaluate(folder: Path, n: int, cfg: TrainConfig, samplers: list[str] | None = None,
             guidances: tuple[float, ...] = (3.0,)) -> list[dict[str, Any]]:
    """Score ``n`` held-out scenes (half of unseen colour-shape pairs) under each sampler.

    The first sampler is also tried at every guidance scale in ``guidances``; the rest at the first.
    Default samplers: :func:`default_samplers` for the model's prediction type.
    """
    import torch

    from plait.local_models.diffusion.shapes_data import benchmark_scenes
    from plait.local_models.diffusion.shapes_pipeline import PlaitShapesPipeline

    device = pick_device(cfg.device)
    captions, hidden, mask = caption_table(cfg.caption_cache)
    index = {c: i for i, c in enumerate(captions)}
    pipe = PlaitShapesPipeline.from_pretrained(folder, dtype=torch.float32).to(device)
    pipe.set_progress_bar_config(disable=True)
    scenes = benchmark_scenes(n)
    ids = torch.tensor([index[s.caption] for s in scenes])
    embeds = {"prompt_embeds": hidden[ids].to(device), "prompt_attention_mask": mask[ids].to(device),
              "negative_prompt_embeds": hidden[[0] * n].to(device), "negative_prompt_attention_mask": mask[[0] * n].to(device)}
    base = dict(pipe.scheduler.config)
    names = samplers or default_samplers(pipe.scheduler.config.prediction_type)
    runs = [(names[0], g) for g in guidances] + [(name, guidances[0]) for name in names[1:]]
    results = []
    for name, guidance in runs:
        try:  # one sampler failing must not lose the others' figures
            row = _score_sampler(pipe, base, name, guidance, scenes, embeds, device)
        except Exception as e:
            row = {"sampler": name, "guidance": guidance, "error": repr(e)}
        print(json.dumps({k: v for k, v in row.items() if k != "images"}), flush=True)
        if "images" in row:
            grid = np.concatenate([np.asarray(img) for img in row.pop("images")[:16]], axis=1)
            from PIL import Image

            Image.fromarray(grid).save(folder / f"eval-{name}-g{guidance}.png")
        results.append(row)
    (folder / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    return results


def _score_sampler(pipe: Any, base: dict[str, Any], name: str, guidance: float, scenes: list[Any],
                   embeds: dict[str, Any], device: str) -> dict[str, Any]:
    import diffusers
    import torch

    from plait.local_models.diffusion.shapes_checker import score_many

    cls_name, kwargs, steps = SAMPLERS[name]
    pipe.scheduler = getattr(diffusers, cls_name).from_config(base, **kwargs)
    gens = [torch.Generator(device=device).manual_seed(i) for i in range(len(scenes))]
    t0 = time.perf_counter()
    images = pipe(**embeds, num_inference_steps=steps, guidance_scale=guidance, generator=gens).images
    row: dict[str, Any] = {"sampler": name, "steps": steps, "guidance": guidance,
                           "seconds": round(time.perf_counter() - t0, 2)}
    texts = [s.caption for s in scenes]
    row.update({k: round(v, 3) for k, v in score_many(images, texts).items()})
    unseen = [i for i, s in enumerate(scenes) if s.unseen]
    row["unseen_acc"] = round(score_many([images[i] for i in unseen], [texts[i] for i in unseen])["all_acc"], 3)
    row["images"] = images
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = TrainConfig()
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", required=True, help="folder to save the pipeline in")
    parser.add_argument("--small", action="store_true", help="a config that trains within an hour on 2 CPU cores")
    for name in ("steps", "batch", "warmup", "layers", "heads", "size", "patch", "train_timesteps", "workers",
                 "eval", "log_every"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    for name in ("max_seconds", "lr", "cond_drop", "ema"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=None)
    parser.add_argument("--channels", default=None, help="block channels, e.g. 64,128,128")
    parser.add_argument("--prediction", choices=["v_prediction", "epsilon"], default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--init", default=None, help="continue from this saved pipeline's UNet")
    parser.add_argument("--cosine", action=argparse.BooleanOptionalAction, default=None, help="cosine learning-rate decay to 0 by --steps or --max-seconds, whichever comes first")
    parser.add_argument("--caption-cache", default=None, help="file for the encoded captions (reused when present)")
    parser.add_argument("--eval-guidance", default="3.0", help="guidance scales to try with the first sampler")
    parser.add_argument("--eval-samplers", default=None, help=f"comma-separated, from {','.join(SAMPLERS)}; default: the saved sampler first, and no trailing ones for epsilon models")
    args = parser.parse_args(argv)
    values: dict[str, Any] = dict(SMALL) if args.small else {}
    for key, value in vars(args).items():
        if key in TrainConfig.__dataclass_fields__ and value is not None:
            values[key] = value
    if isinstance(values.get("channels"), str):
        values["channels"] = tuple(int(c) for c in values["channels"].split(","))
    cfg = TrainConfig(**values)
    if cfg.size % (cfg.patch * 2 ** (len(cfg.channels) - 1)):
        parser.error(f"--size {cfg.size} must be a multiple of patch * 2**(levels-1)")
    folder = train(cfg)
    if cfg.eval:
        samplers = args.eval_samplers.split(",") if args.eval_samplers else None
        evaluate(folder, cfg.eval, cfg, samplers, tuple(float(g) for g in args.eval_guidance.split(",")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
