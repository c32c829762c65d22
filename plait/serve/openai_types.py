"""Request bodies of the OpenAI-compatible routes, validated by pydantic.

Unknown fields are refused (as OpenAI does: "Unrecognized request argument"), so a typo never
passes silently. ``parse`` turns bad JSON and validation errors into 400s that name the field.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from plait.serve.errors import APIError

M = TypeVar("M", bound=BaseModel)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Request):
    include_usage: bool = False


class ChatCompletionRequest(_Request):
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None


class EmbeddingRequest(_Request):
    model: str
    input: str | list[str]
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
    seed: int | None = None
    steps: int | None = Field(default=None, ge=1)
    guidance_scale: float | None = None
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
