"""Request bodies of the OpenAI-compatible routes, validated by pydantic.

Unknown fields are refused (as OpenAI does: "Unrecognized request argument"), so a typo never
passes silently. ``parse`` turns bad JSON and validation errors into 400s that name the field.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from plait.serve.errors import APIError

M = TypeVar("M", bound=BaseModel)


class _Request(BaseModel):
    # Numbers are finite (JSON's NaN/Infinity extensions are refused), booleans are JSON booleans.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


#: A seed fits a signed 64-bit integer (what samplers take).
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
#: Token counts: at least 1, at most what any model's window could hold.
Tokens = Annotated[int, Field(ge=1, le=1_000_000)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class StreamOptions(_Request):
    include_usage: StrictBool = False


class ChatCompletionRequest(_Request):
    """The body of ``POST /v1/chat/completions``; each field as OpenAI defines it, with its range."""

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=1_000_000)  # vLLM's extra; 0 means "off"
    max_tokens: Tokens | None = None
    max_completion_tokens: Tokens | None = None
    stop: str | Annotated[list[str], Field(max_length=16)] | None = None
    seed: Seed | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=256)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: dict[str, Any] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    user: str | None = None
    metadata: dict[str, Any] | None = None
    store: StrictBool | None = None
    # vLLM's names for output constraints (sent with ``extra_body``); local models enforce them.
    guided_regex: str | None = None
    guided_choice: list[str] | None = Field(default=None, min_length=1)


def check_choices(req: ChatCompletionRequest) -> None:
    """What this server cannot do, refused clearly: ``top_logprobs`` alone, an unknown ``response_format``.

    ``logprobs`` and ``n`` are checked against the served object where they are passed on (only a
    chat model that takes the option returns logprobs; only one with ``supports_n`` gives n choices).
    """
    if req.top_logprobs is not None and not req.logprobs:
        raise APIError(400, "'top_logprobs' needs 'logprobs': true.", param="top_logprobs")
    fmt = req.response_format
    if fmt is not None and fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise APIError(400, f"Unknown response_format type {fmt.get('type')!r}: use 'text', 'json_object' or "
                            "'json_schema'.", param="response_format")


class EmbeddingRequest(_Request):
    model: str
    # text, texts, or token ids (one list, or a list of lists) of the served model's tokenizer
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class ImageRequest(_Request):
    model: str | None = None
    prompt: str = Field(min_length=1)
    n: int = Field(default=1, ge=1, le=16)
    size: str | None = None
    response_format: Literal["b64_json", "url"] | None = None
    quality: str | None = None
    style: str | None = None
    user: str | None = None
    # plait extras (sent with ``extra_body``): passed to the image model.
    seed: Seed | None = None
    steps: int | None = Field(default=None, ge=1, le=1000)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=100.0)
    negative_prompt: str | None = None


def parse(model: type[M], body: bytes) -> M:
    """Parse and validate a JSON body; every failure is a 400 in OpenAI's format naming the field."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"The request body is not valid JSON ({e}). Send a JSON object with "
                            "Content-Type: application/json.") from None
    except RecursionError:
        raise APIError(400, "The request body nests JSON too deeply.") from None
    if not isinstance(data, dict):
        raise APIError(400, f"The request body must be a JSON object, not a JSON {type(data).__name__}.")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise APIError(400, f"Unrecognized request argument supplied: {loc}", param=loc) from None
        if err["type"] == "missing":
            raise APIError(400, f"Missing required parameter: '{loc}'.", param=loc) from None
        raise APIError(400, f"Invalid value for '{loc}': {err['msg']}.", param=loc) from None
