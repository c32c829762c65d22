"""``plait imagine PROMPT -o out.png``: draw an image from a text prompt, with a progress bar.

The default model is plait's own small shapes model, shipped in the package (works offline). It
draws one shape at 32x32 pixels and knows a small vocabulary (listed by ``plait imagine --help``);
a prompt with other words gets a warning naming them. The saved image is enlarged (nearest
neighbour, so pixels stay sharp) to at least ``--size`` pixels, 256 by default; ``--size native``
keeps the model's own size. ``--model`` takes any diffusers text-to-image folder or hub id.

Everything is checked before the model loads: the prompt, the numbers, the scheduler, the
output folder and format, and the model's folder.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time

DEFAULT_SIZE = 256
#: Words of the bundled model's captions that are not colours, shapes, sizes or positions.
_GLUE = {"a", "an", "the", "on", "at", "in", "of", "one"}


def _vocabulary() -> dict[str, list[str]]:
    """The bundled shapes model's words, from its data generator (the ground truth it learned)."""
    from plait.local_models.diffusion.shapes_data import COLOURS, POSITION_PHRASES, SHAPES, SIZES

    return {"colours": list(COLOURS), "shapes": list(SHAPES), "sizes": list(SIZES),
            "positions": [p for phrases in POSITION_PHRASES.values() for p in phrases]}


def unknown_words(prompt: str) -> list[str]:
    """The words of ``prompt`` the bundled shapes model never saw (in order, once each)."""
    vocab = _vocabulary()
    known = set(_GLUE) | {w for words in vocab.values() for phrase in words for w in phrase.split()}
    unknown: list[str] = []
    for word in re.findall(r"[a-z]+", prompt.lower()):
        if word not in known and word not in unknown:
            unknown.append(word)
    return unknown


def configure(parser: argparse.ArgumentParser) -> None:
    vocab = _vocabulary()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "The bundled model draws one shape, 32x32 pixels, from prompts of the form\n"
        "  a [SIZE] COLOUR SHAPE POSITION      e.g. 'a small red circle on the left'\n"
        f"  colours:   {', '.join(vocab['colours'])}\n"
        f"  shapes:    {', '.join(vocab['shapes'])}\n"
        f"  sizes:     {', '.join(vocab['sizes'])} (optional)\n"
        f"  positions: {', '.join(vocab['positions'])}\n"
        "Other words mean nothing to it (a warning names them). The saved image is enlarged to\n"
        f"{DEFAULT_SIZE} pixels; --size native keeps 32x32.")
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
    parser.add_argument("--width", type=int, default=None, help="width the model draws, in pixels (default: the model's)")
    parser.add_argument("--height", type=int, default=None, help="height the model draws, in pixels (default: the model's)")
    parser.add_argument("-n", "--num-images", type=int, default=1, help="how many images (default: 1)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    parser.add_argument("--size", default=str(DEFAULT_SIZE),
                        help=f"enlarge the saved image (nearest neighbour) to at least this many pixels a side "
                             f"(default: {DEFAULT_SIZE}); 'native' saves it as drawn")
    parser.add_argument("--scale", type=int, default=None,
                        help="enlarge the saved image exactly this many times instead (nearest neighbour)")
    parser.add_argument("--json", action="store_true", help="print the saved paths and parameters as JSON")


def enlargement(drawn: tuple[int, int], size: int | None, scale: int | None) -> int:
    """How many times to enlarge an image drawn at ``drawn``: ``scale`` if given, else the smallest whole
    factor that makes its longer side at least ``size`` (1 for ``size`` None: native)."""
    if scale:
        return scale
    return max(1, math.ceil(size / max(drawn))) if size else 1


def _bar(step: int, total: int, started: float, width: int = 30) -> str:
    done = int(width * step / max(total, 1))
    return f"\r[{'#' * done}{'.' * (width - done)}] step {step}/{total}  {time.perf_counter() - started:5.1f}s"


def _check(args: argparse.Namespace) -> int | None:
    """Everything that can be checked before the model loads. Returns the target size (None: native)."""
    from plait.commands._checks import (
        CLIError,
        UsageError,
        check_output_file,
        check_path_or_hub_id,
        require_text,
    )
    from plait.commands._checks import warn as print_warning
    from plait.local_models.diffusion.diffusers_image import scheduler_key

    args.prompt = require_text(args.prompt, "prompt", "plait imagine 'a small red circle on the left'")
    for flag, value in (("--steps", args.steps), ("--num-images", args.num_images), ("--width", args.width),
                        ("--height", args.height), ("--scale", args.scale)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be 1 or more, not {value}")
    size: int | None = None
    if args.size != "native":
        try:
            size = int(args.size)
        except ValueError:
            raise UsageError(f"--size takes a number of pixels or 'native', not {args.size!r}") from None
        if size < 1:
            raise UsageError(f"--size must be 1 or more, not {size}")
    if args.scheduler is not None:
        try:
            args.scheduler = scheduler_key(args.scheduler)
        except ValueError as e:
            raise UsageError(str(e)) from None
    check_output_file(args.output, "-o/--output")
    if args.model is not None:
        check_path_or_hub_id(args.model, "image model", "--model")
    else:
        from pathlib import Path

        from plait.defaults import image_model_path

        if not Path(image_model_path()).is_dir():
            raise CLIError(f"the bundled image model is missing ({image_model_path()}); reinstall plait, "
                           "or pass --model with a diffusers folder")
        unknown = unknown_words(args.prompt)
        if unknown:
            print_warning(f"the bundled shapes model does not know {', '.join(repr(w) for w in unknown)}; it draws "
                          "one shape from 'a [SIZE] COLOUR SHAPE POSITION' (the words: plait imagine --help), "
                          "so expect a plain shape or a blur")
    return size


def run(args: argparse.Namespace) -> int:
    size = _check(args)

    from plait.commands._checks import CLIError
    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel
    from plait.messages import ImageResult, ProgressEvent

    params = {"prompt": args.prompt, "seed": args.seed, "steps": args.steps, "scheduler": args.scheduler,
              "guidance_scale": args.guidance, "negative_prompt": args.negative, "width": args.width,
              "height": args.height, "num_images": args.num_images}
    params = {k: v for k, v in params.items() if v is not None}
    model = DiffusersImageModel(args.model, device=args.device)
    started = time.perf_counter()
    result: ImageResult | None = None
    bar = sys.stderr.isatty()
    try:
        for item in model.stream(params):
            if isinstance(item, ProgressEvent) and bar:
                print(_bar(item.step, item.total, started), end="", file=sys.stderr, flush=True)
            elif isinstance(item, ImageResult):
                result = item
    except (ValueError, FileNotFoundError) as e:  # sizes the model cannot draw, a folder that is no pipeline
        raise CLIError(str(e)) from None
    finally:
        if bar:
            print(file=sys.stderr)
    if result is None:
        raise CLIError("the model returned no image")
    drawn = result.images[0].size
    factor = enlargement(drawn, size, args.scale)
    if factor > 1:
        from PIL import Image

        result.images = [img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
                         for img in result.images]
    paths = result.save(args.output)
    p = result.parameters
    seconds = time.perf_counter() - started
    if args.json:
        import json

        shown = {k: v for k, v in p.items() if isinstance(v, (str, int, float, bool, type(None)))}
        print(json.dumps({"paths": paths, "drawn": list(drawn), "saved": list(result.images[0].size),
                          "parameters": shown, "seconds": round(seconds, 2)}, indent=2))
        return 0
    enlarged = f", enlarged {factor}x from {drawn[0]}x{drawn[1]}" if factor > 1 else ""
    print(f"wrote {', '.join(paths)}  ({result.images[0].width}x{result.images[0].height}{enlarged}; seed {p['seed']}, "
          f"{p['steps']} steps, {p['scheduler_class']}, guidance {p['guidance_scale']}, {seconds:.1f}s)")
    return 0
