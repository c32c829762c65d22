"""Image generation from any OpenAI-compatible ``/v1/images/generations`` endpoint (official SDK).

An :class:`~plait.image_model.ImageModel`: a prompt (string, prompt value or message), or a dict
with ``prompt`` and any of ``size`` (or ``width`` and ``height``), ``num_images`` (OpenAI's ``n``
is accepted too), ``seed``, ``quality``, ``style``, ``negative_prompt``, ``steps``,
``guidance_scale``, in; an :class:`~plait.messages.ImageResult` (PIL images plus every parameter
used) out. ``seed``, ``negative_prompt``, ``steps`` and ``guidance_scale`` are not OpenAI
parameters: they are sent only when given, for servers that take them (plait serve, LocalAI...).
``stream`` yields the result alone (the API reports no progress).

Example::

    from plait.remote.openai_images import OpenAIImageModel
    model = OpenAIImageModel("gpt-image-1", size="1024x1024")
    model.invoke("a lighthouse at dusk, watercolour").save("lighthouse.png")
"""

from __future__ import annotations

import base64
import io
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from plait.defaults import require
from plait.image_model import ImageModel
from plait.messages import ImageResult
from plait.remote._openai import OpenAISettings, RemoteModelError

_EXTRAS = ("seed", "negative_prompt", "steps", "guidance_scale")


class ImageRequest(BaseModel):
    """The parameters of one image request (unknown keys are an error)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    prompt: str = Field(min_length=1)
    size: str | None = Field(None, pattern=r"^(\d+x\d+|auto)$")
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    num_images: int = Field(1, ge=1, le=10, validation_alias=AliasChoices("num_images", "n"))
    seed: int | None = None
    quality: str | None = None
    style: str | None = None
    negative_prompt: str | None = None
    steps: int | None = Field(None, ge=1)
    guidance_scale: float | None = None

    @model_validator(mode="after")
    def _size(self) -> ImageRequest:
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height, or size='WxH'")
        if self.width is not None:
            if self.size is not None and self.size != f"{self.width}x{self.height}":
                raise ValueError(f"size={self.size!r} contradicts width={self.width}, height={self.height}")
            self.size = f"{self.width}x{self.height}"
        return self


class OpenAIImageModel(ImageModel):
    """Text-to-image over the OpenAI images API.

    Args:
        model: the image model id on that server ("gpt-image-1", "dall-e-3", ...).
        base_url, api_key, organization: else ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` / ``OPENAI_ORG_ID``.
        timeout, max_retries: per request (image generation is slow: the default timeout is 300 s).
        **defaults: default request parameters (see :class:`ImageRequest`), e.g. ``size="512x512"``.
    """

    def __init__(self, model: str = "gpt-image-1", *, base_url: str | None = None, api_key: str | None = None,
                 organization: str | None = None, timeout: float = 300.0, max_retries: int = 2,
                 **defaults: Any) -> None:
        self.model = self.model_name = model
        self.settings = OpenAISettings(base_url, api_key, organization, timeout=timeout, max_retries=max_retries)
        self.defaults = self._check({"prompt": "-", **defaults}).model_dump(exclude_unset=True, exclude={"prompt"})

    def __repr__(self) -> str:
        return f"OpenAIImageModel({self.model!r}, base_url={self.settings.base_url!r})"

    def get_name(self) -> str:
        return self.name or f"OpenAIImageModel({self.model})"

    def warm_up(self) -> None:
        """Make the SDK client now (it fails here if no API key is set for api.openai.com)."""
        self.settings.client()

    @staticmethod
    def _check(params: dict[str, Any]) -> ImageRequest:
        try:
            return ImageRequest(**params)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'request'}: {err['msg']}" for err in e.errors())
            raise ValueError(f"Invalid image request: {problems}. Known parameters: "
                             f"{sorted(ImageRequest.model_fields)}") from e

    def _params(self, input: Any, kwargs: dict[str, Any]) -> ImageRequest:
        given = self.parameters(input, kwargs)
        if "n" in given:  # OpenAI's name for num_images
            if "num_images" in given and given["num_images"] != given["n"]:
                raise ValueError(f"n={given['n']!r} contradicts num_images={given['num_images']!r}; give one")
            given["num_images"] = given.pop("n")
        defaults = self.defaults
        if given.keys() & {"size", "width", "height"}:  # a size given per call replaces the default one
            defaults = {k: v for k, v in defaults.items() if k not in ("size", "width", "height")}
        return self._check({**defaults, **given})

    def _request(self, p: ImageRequest) -> dict[str, Any]:
        req: dict[str, Any] = {"model": self.model, "prompt": p.prompt, "n": p.num_images}
        for key in ("size", "quality", "style"):
            if getattr(p, key) is not None:
                req[key] = getattr(p, key)
        if not self.model.startswith("gpt-image"):  # gpt-image models always answer in base64, and reject this
            req["response_format"] = "b64_json"
        extra = {k: getattr(p, k) for k in _EXTRAS if getattr(p, k) is not None}
        if extra:
            req["extra_body"] = extra
        return req

    def _result(self, resp: Any, p: ImageRequest) -> ImageResult:
        require("PIL", "diffusion", "pillow")
        from PIL import Image

        images = []
        for item in resp.data or []:
            if item.b64_json:
                raw = base64.b64decode(item.b64_json)
            elif item.url:
                raw = self._fetch(item.url)
            else:
                raise RemoteModelError(f"{self.settings.base_url} sent an image with neither b64_json nor url")
            img = Image.open(io.BytesIO(raw))
            img.load()
            images.append(img)
        if len(images) != p.num_images:
            raise RemoteModelError(f"{self.settings.base_url} returned {len(images)} images, {p.num_images} were asked for")
        params = p.model_dump(exclude_none=True, exclude={"width", "height"})
        revised = getattr(resp.data[0], "revised_prompt", None)
        if revised and revised != p.prompt:
            params["revised_prompt"] = revised
        return ImageResult(images=images, parameters=params, model=self.model)

    def _fetch(self, url: str) -> bytes:
        if url.startswith("data:"):
            return base64.b64decode(url.split(",", 1)[1])
        import httpx

        try:
            r = httpx.get(url, timeout=self.settings.timeout, follow_redirects=True)
            r.raise_for_status()
        except httpx.HTTPError as e:
            raise RemoteModelError(f"Could not download the generated image from {url}: {e}") from e
        return r.content

    def invoke(self, input: Any, **kwargs: Any) -> ImageResult:
        p = self._params(input, kwargs)
        try:
            resp = self.settings.client().images.generate(**self._request(p))
        except Exception as e:
            raise self.settings.error(e, self.model, "image generation") from e
        return self._result(resp, p)

    async def ainvoke(self, input: Any, **kwargs: Any) -> ImageResult:
        p = self._params(input, kwargs)
        try:
            resp = await self.settings.aclient().images.generate(**self._request(p))
        except Exception as e:
            raise self.settings.error(e, self.model, "image generation") from e
        return self._result(resp, p)
