"""``plait imagine PROMPT -o out.png``: draw an image from a text prompt, with a progress bar.

The default model is plait's own small shapes model, shipped in the package (works offline):
it draws one shape, e.g. "a small red circle on the left" (colours: red, orange, yellow, green,
cyan, blue, purple, pink; shapes: circle, square, triangle; left, right, top, bottom, center).
``--model`` takes any diffusers text-to-image folder or hub id.
"""

from __future__ import annotations

import argparse
import sys
import time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="what to draw, e.g. 'a small red circle on the left'")
    parser.add_argument("-o", "--output", default="out.png",
                        help="image file to write (default: out.png; several images: out-0.png, out-1.png...)")
    parser.add_argument("--model", default=None,
                        help="diffusers pipeline folder or hub id (default: plait's bundled shapes model)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: 25)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a random one, printed)")
    parser.add_argument("--scheduler", default=None,
                        help="sampler: ddpm, ddim, dpm++, dpm++sde, dpm++karras, euler, euler_a, unipc, lcm "
                             "(default: the model's own)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    parser.add_argument("--negative", default=None, help="negative prompt")
    parser.add_argument("--width", type=int, default=None, help="width in pixels (default: the model's)")
    parser.add_argument("--height", type=int, default=None, help="height in pixels (default: the model's)")
    parser.add_argument("-n", "--num-images", type=int, default=1, help="how many images (default: 1)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    parser.add_argument("--scale", type=int, default=1,
                        help="also enlarge the saved image this many times (nearest neighbour; small models)")


def _bar(step: int, total: int, started: float, width: int = 30) -> str:
    done = int(width * step / max(total, 1))
    return f"\r[{'#' * done}{'.' * (width - done)}] step {step}/{total}  {time.perf_counter() - started:5.1f}s"


def run(args: argparse.Namespace) -> int:
    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel
    from plait.messages import ImageResult, ProgressEvent

    if args.scale < 1:
        print("error: --scale must be 1 or more", file=sys.stderr)
        return 2
    params = {"prompt": args.prompt, "seed": args.seed, "steps": args.steps, "scheduler": args.scheduler,
              "guidance_scale": args.guidance, "negative_prompt": args.negative, "width": args.width,
              "height": args.height, "num_images": args.num_images}
    params = {k: v for k, v in params.items() if v is not None}
    model = DiffusersImageModel(args.model, device=args.device)
    started = time.perf_counter()
    result: ImageResult | None = None
    try:
        for item in model.stream(params):
            if isinstance(item, ProgressEvent):
                print(_bar(item.step, item.total, started), end="", file=sys.stderr, flush=True)
            elif isinstance(item, ImageResult):
                result = item
    except (ValueError, FileNotFoundError) as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    if result is None:
        print("error: the model returned no image", file=sys.stderr)
        return 1
    if args.scale > 1:
        from PIL import Image

        result.images = [img.resize((img.width * args.scale, img.height * args.scale), Image.Resampling.NEAREST)
                         for img in result.images]
    paths = result.save(args.output)
    p = result.parameters
    print(f"wrote {', '.join(paths)}  (seed {p['seed']}, {p['steps']} steps, {p['scheduler_class']}, "
          f"guidance {p['guidance_scale']}, {time.perf_counter() - started:.1f}s)")
    return 0
