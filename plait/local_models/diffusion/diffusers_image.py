"""Local text-to-image models through diffusers: the local :class:`~plait.image_model.ImageModel`.

:class:`DiffusersImageModel` takes a prompt string, a prompt value or a dict of parameters
(``prompt``, ``negative_prompt``, ``seed``, ``steps``, ``guidance_scale``, ``width``,
``height``, ``num_images``, ``scheduler``) and returns an :class:`~plait.messages.ImageResult`:
PIL images plus every parameter used (seeds included), so each image can be made again.
``stream`` yields :class:`~plait.messages.ProgressEvent` (step i of n, optional preview) and
then the result.

It loads any folder or hub id ``AutoPipelineForText2Image`` loads (Stable Diffusion 1.x/2.x,
SDXL, SD-Turbo...) with ``use_safetensors=True``, and plait's own
:class:`~plait.local_models.diffusion.shapes_pipeline.PlaitShapesPipeline` (the default model, shipped in
the package). The scheduler is swapped by name from the pipeline's own scheduler config.

Seeds: each image gets its own ``torch.Generator`` (``seed``, ``seed + 1``... for ``num_images``),
which draws both its starting noise and a stochastic scheduler's step noise, so an image's noise
does not depend on the other prompts in the call. What is promised:

- the same parameters, in the same call shape (the same prompts batched together), on the same
  device, torch version and thread count give the same image, bit for bit;
- a prompt drawn inside a :meth:`~DiffusersImageModel.batch` and alone gives the same image up to
  float rounding: the UNet's convolutions and matmuls (oneDNN, MKL) block their sums differently
  by batch size. Measured on the bundled model (25 steps, 1 thread, 20 captions): UNet outputs
  4e-6 apart, images 2e-6 apart in [0, 1], so at most 1 of 255 levels on at most 2 of 1024
  pixels; another seed changes every pixel, by up to 63 levels.

Example::

    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel
    model = DiffusersImageModel()                      # the bundled shapes model
    result = model.invoke({"prompt": "a red circle on the left", "seed": 0})
    result.images[0].save("circle.png")
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from plait._bridge import from_threads
from plait.defaults import require
from plait.image_model import ImageModel
from plait.messages import ImageResult, ProgressEvent

#: Scheduler names -> (diffusers class, config overrides). One sampling algorithm per entry.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddpm": ("DDPMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpm++sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "dpm++karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),  # only for LCM-distilled models
}
_ALIASES = {"dpmsolver": "dpm++", "dpm": "dpm++", "dpmpp": "dpm++", "dpm++2m": "dpm++", "euler-a": "euler_a",
            "euler_ancestral": "euler_a", "dpmsolver++": "dpm++"}
_PARAMS = {"prompt", "negative_prompt", "seed", "steps", "guidance_scale", "width", "height", "num_images",
           "scheduler"}


def scheduler_names() -> list[str]:
    return sorted(SCHEDULERS)


def scheduler_key(name: str) -> str:
    """The canonical scheduler name for ``name`` (aliases accepted); ValueError listing the known ones."""
    key = _ALIASES.get(name.lower().strip(), name.lower().strip())
    if key not in SCHEDULERS:
        raise ValueError(f"Unknown scheduler {name!r}: use one of {', '.join(scheduler_names())}")
    return key


def make_scheduler(name: str, config: Any) -> Any:
    """A scheduler by name, built from an existing scheduler's config (its noise schedule kept)."""
    import diffusers

    class_name, overrides = SCHEDULERS[scheduler_key(name)]
    return getattr(diffusers, class_name).from_config(config, **overrides)


def pick_device(device: str | None = None) -> str:
    import torch

    if device and device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_pipeline(model: str, device: str, dtype: Any) -> Any:
    """Load a diffusers text-to-image pipeline from a folder or hub id (safetensors only)."""
    require("diffusers", "diffusion")
    with quiet_loading():
        return _load_pipeline(model, device, dtype)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """No "Loading pipeline components" / "Loading weights" bars (loading is not the user's progress)."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    was = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was[0]:
            dlog.enable_progress_bar()
        if was[1]:
            tlog.enable_progress_bar()


def _load_pipeline(model: str, device: str, dtype: Any) -> Any:
    path = Path(model).expanduser()
    looks_local = path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1
    if looks_local:
        if not path.is_dir():
            raise FileNotFoundError(f"No model folder at {model}: pass a folder saved with save_pretrained or a hub id")
        index = path / "model_index.json"
        if not index.exists():
            raise ValueError(f"{model} is not a diffusers pipeline folder (it has no model_index.json): point at a "
                             "folder saved with DiffusionPipeline.save_pretrained, or at a hub id")
        class_name = json.loads(index.read_text()).get("_class_name")
        if class_name == "PlaitShapesPipeline":
            from plait.local_models.diffusion.shapes_pipeline import PlaitShapesPipeline

            return PlaitShapesPipeline.from_pretrained(str(path), dtype=dtype, use_safetensors=True).to(device)
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(model if not looks_local else str(path), dtype=dtype,
                                                     use_safetensors=True)
    return pipe.to(device)


class DiffusersImageModel(ImageModel):
    """A diffusers text-to-image pipeline as a Runnable: prompt (or dict of parameters) in, images out.

    Args:
        model: a pipeline folder or hub id; ``None`` for plait's own shapes model.
        pipeline: an already built diffusers pipeline (then ``model`` only names it).
        scheduler: scheduler name (see :data:`SCHEDULERS`); ``None`` keeps the pipeline's own.
        steps, guidance_scale, width, height, negative_prompt, num_images: defaults per call.
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or ``"auto"`` (CUDA, then MPS, then CPU).
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` or ``"auto"`` (float16 on CUDA, else float32).
        previews: stream a small preview image with each progress event, where the pipeline can.

    Example::

        model = DiffusersImageModel(scheduler="dpm++", steps=25)
        for event in model.stream("a small blue square at the top"):
            print(event)  # ProgressEvent(step=1, total=25) ... then an ImageResult
    """

    io_bound = False

    def __init__(self, model: str | None = None, *, pipeline: Any = None, scheduler: str | None = None,
                 steps: int | None = None, guidance_scale: float | None = None, width: int | None = None,
                 height: int | None = None, negative_prompt: str | None = None, num_images: int = 1,
                 device: str | None = "auto", dtype: str = "auto", previews: bool = False) -> None:
        if model is None and pipeline is None:
            from plait.defaults import image_model_path

            model = image_model_path()
        if scheduler is not None:
            scheduler = scheduler_key(scheduler)
        self.model = model or type(pipeline).__name__
        self.model_name = Path(self.model).name if Path(self.model).is_dir() else self.model
        self.scheduler = scheduler
        self.defaults = {"steps": steps, "guidance_scale": guidance_scale, "width": width, "height": height,
                         "negative_prompt": negative_prompt, "num_images": num_images}
        self.device = device
        self.dtype = dtype
        self.previews = previews
        self._pipeline = pipeline
        self._schedulers: dict[str, Any] = {}
        self._lock = threading.Lock()  # one generation at a time per pipeline (schedulers hold state)

    def __repr__(self) -> str:
        return f"DiffusersImageModel(model={self.model!r}, scheduler={self.scheduler!r})"

    # --- loading ---------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load the pipeline now (and plait-shapes' text encoder), not on the first call."""
        pipe = self.pipeline
        from plait.local_models.diffusion.shapes_pipeline import PlaitShapesPipeline

        if isinstance(pipe, PlaitShapesPipeline):
            pipe.load_text_encoder()

    @property
    def pipeline(self) -> Any:
        """The diffusers pipeline, loaded on first use."""
        if self._pipeline is None:
            import torch

            device = pick_device(self.device)
            dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(self.dtype)
            if dtype is None:
                if self.dtype != "auto":
                    raise ValueError(f"Unknown dtype {self.dtype!r}: use float32, float16, bfloat16 or auto")
                dtype = torch.float16 if device == "cuda" else torch.float32
            self._pipeline = load_pipeline(str(self.model), device, dtype)
        pipe = self._pipeline
        if not hasattr(self, "_base_scheduler"):
            pipe.set_progress_bar_config(disable=True)
            self._base_scheduler = pipe.scheduler
        return pipe

    def _scheduler_for(self, name: str | None) -> Any:
        if name is None:
            return self._base_scheduler
        if name not in self._schedulers:
            self._schedulers[name] = make_scheduler(name, self._base_scheduler.config)
        return self._schedulers[name]

    # --- parameters ------------------------------------------------------------------------------
    def _params(self, input: Any, overrides: dict[str, Any]) -> dict[str, Any]:
        params = self.parameters(input, overrides)
        unknown = set(params) - _PARAMS
        if unknown:
            raise ValueError(f"Unknown image parameters {sorted(unknown)}: use {sorted(_PARAMS)}")
        params = {**{k: v for k, v in self.defaults.items() if v is not None}, **params}
        pipe = self.pipeline
        size = _default_size(pipe)
        params.setdefault("width", size)
        params.setdefault("height", size)
        multiple = _size_multiple(pipe)
        for key in ("width", "height"):
            value = params[key]
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{key} must be a positive whole number of pixels, not {value!r}")
            if value % multiple:
                raise ValueError(f"{key}={value} is not a size this model can draw: use a multiple of {multiple} "
                                 f"(its default is {size})")
        params.setdefault("steps", 25)
        if not isinstance(params["steps"], int) or params["steps"] <= 0:
            raise ValueError(f"steps must be a positive whole number, not {params['steps']!r}")
        params.setdefault("guidance_scale", _default_guidance(pipe))
        params.setdefault("num_images", 1)
        if not isinstance(params["num_images"], int) or params["num_images"] <= 0:
            raise ValueError(f"num_images must be a positive whole number, not {params['num_images']!r}")
        params.setdefault("negative_prompt", None)
        params.setdefault("scheduler", self.scheduler)
        if params["scheduler"] is not None:
            params["scheduler"] = scheduler_key(params["scheduler"])
        if params.get("seed") is None:
            params["seed"] = random.randrange(2**31)
        return params

    # --- generation ------------------------------------------------------------------------------
    def _generate(self, batch: list[dict[str, Any]], on_step: Any = None) -> list[ImageResult]:
        """Run prompts that share steps, guidance, size and scheduler in one pipeline call."""
        import torch

        first = batch[0]
        pipe = self.pipeline
        device = pipe._execution_device
        gen_device = "cpu" if device.type == "mps" else device
        prompts, negatives, generators, seeds = [], [], [], []
        for p in batch:
            per = [p["seed"] + i for i in range(p["num_images"])]
            seeds.append(per)
            prompts += [p["prompt"]] * p["num_images"]
            negatives += [p["negative_prompt"] or ""] * p["num_images"]
            generators += [torch.Generator(device=gen_device).manual_seed(s) for s in per]
        kwargs: dict[str, Any] = {"prompt": prompts, "num_inference_steps": first["steps"],
                                  "guidance_scale": first["guidance_scale"], "width": first["width"],
                                  "height": first["height"], "generator": generators}
        if any(negatives):
            kwargs["negative_prompt"] = negatives
        if on_step is not None:
            kwargs["callback_on_step_end"] = on_step
            if self.previews and "pred_original" in getattr(pipe, "_callback_tensor_inputs", []):
                kwargs["callback_on_step_end_tensor_inputs"] = ["pred_original"]
        with self._lock:
            pipe.scheduler = self._scheduler_for(first["scheduler"])
            images = pipe(**kwargs).images
        results, i = [], 0
        for p, per in zip(batch, seeds, strict=True):
            used = dict(p, seeds=per, scheduler_class=type(pipe.scheduler).__name__)
            results.append(ImageResult(images=images[i:i + len(per)], parameters=used, model=str(self.model)))
            i += len(per)
        return results

    def invoke(self, input: Any, **kwargs: Any) -> ImageResult:
        return self._generate([self._params(input, kwargs)])[0]

    def batch(self, inputs: Any, *, max_concurrency: int | None = None, return_exceptions: bool = False,
              **kwargs: Any) -> list[Any]:
        """Generate many prompts, grouping those with the same settings into one pipeline call."""
        out: list[Any] = [None] * len(inputs)
        groups: dict[tuple[Any, ...], list[tuple[int, dict[str, Any]]]] = {}
        for i, x in enumerate(inputs):
            try:
                p = self._params(x, kwargs)
            except Exception as e:
                if not return_exceptions:
                    raise
                out[i] = e
                continue
            key = (p["steps"], p["guidance_scale"], p["width"], p["height"], p["scheduler"])
            groups.setdefault(key, []).append((i, p))
        for members in groups.values():
            size = max_concurrency or len(members)
            for start in range(0, len(members), size):
                chunk = members[start:start + size]
                try:
                    results: list[Any] = self._generate([p for _, p in chunk])
                except Exception as e:
                    if not return_exceptions:
                        raise
                    results = [e] * len(chunk)
                for (i, _), r in zip(chunk, results, strict=True):
                    out[i] = r
        return out

    def stream(self, input: Any, **kwargs: Any) -> Iterator[Any]:
        """Yield a ProgressEvent after each denoising step, then the ImageResult.

        The pipeline runs in a worker thread; a consumer that stops reading stops it at its next step.
        """
        params = self._params(input, kwargs)
        total = params["steps"]

        def work(put: Any) -> None:
            def on_step(pipe: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
                preview = _to_preview(tensors["pred_original"][0]) if "pred_original" in tensors else None
                put(ProgressEvent(step=i + 1, total=total, preview=preview))
                return {}

            put(self._generate([params], on_step)[0])

        yield from from_threads(work)


def _default_size(pipe: Any) -> int:
    if hasattr(pipe, "default_size"):
        return int(pipe.default_size)
    factor = getattr(pipe, "vae_scale_factor", 8)
    return int(pipe.unet.config.sample_size) * int(factor)


def _size_multiple(pipe: Any) -> int:
    if hasattr(pipe, "size_multiple"):
        return int(pipe.size_multiple)
    return max(8, int(getattr(pipe, "vae_scale_factor", 8)))  # Stable Diffusion pipelines check multiples of 8


def _default_guidance(pipe: Any) -> float:
    import inspect

    default = inspect.signature(pipe.__call__).parameters.get("guidance_scale")
    return float(default.default) if default is not None and default.default is not inspect.Parameter.empty else 5.0


def _to_preview(x: Any) -> Any:
    """A [-1, 1] (3, H, W) tensor to a small PIL image."""
    from PIL import Image

    arr = ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)
