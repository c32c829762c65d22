"""What an app serves: a chat target, and optionally embeddings and an image model, by model id.

Kinds are the interfaces objects declare (their base classes), never guessed from attributes:
- :class:`~plait.embeddings.Embeddings` answers ``/v1/embeddings``;
- :class:`~plait.image_model.ImageModel` answers ``/v1/images/generations``;
- any other Runnable (chat model, chain) answers chat completions.
An image model also answers chat completions (the prompt is the last user message; the images
come back in the extra ``images`` field), which is how the web page shows them inline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plait.embeddings import Embeddings
from plait.image_model import ImageModel
from plait.runnable import Runnable
from plait.serve.adapters import ChatTarget
from plait.serve.config import ServeConfig
from plait.serve.errors import APIError


def _model_id(obj: Any, fallback: str) -> str:
    """The object's ``model_name`` (a folder's name for a local path), else ``fallback``."""
    name = getattr(obj, "model_name", None)  # chains have none
    if not isinstance(name, str) or not name:
        return fallback
    return Path(name).name if Path(name).is_absolute() else name


@dataclass
class ServeState:
    """Lifecycle flags read by ``/ready``: set by the lifespan and by the server on shutdown."""

    ready: bool = False
    draining: bool = False
    warm_up_error: str | None = None
    allowed_hosts: set[str] = field(default_factory=set)  # beyond the local names; the server adds its own


class Served:
    """The objects behind one app, each under its model id."""

    def __init__(self, target: Any, config: ServeConfig, *, embeddings: Embeddings | None = None,
                 images: ImageModel | None = None) -> None:
        if embeddings is not None and not isinstance(embeddings, Embeddings):
            raise TypeError(f"embeddings= must be a plait.embeddings.Embeddings, not {type(embeddings).__name__}")
        if images is not None and not isinstance(images, ImageModel):
            raise TypeError(f"images= must be a plait.image_model.ImageModel, not {type(images).__name__}")
        self.config = config
        self.target = target
        self.chat: ChatTarget | None = None
        self.embeddings = embeddings
        self.images = images
        if isinstance(target, Embeddings):
            if embeddings is not None:
                raise TypeError("Serving embeddings as the target and embeddings= too: give one of them")
            self.embeddings = target
        elif isinstance(target, Runnable):
            if isinstance(target, ImageModel) and images is None:
                self.images = target
            self.chat = ChatTarget(target, config)
        else:
            raise TypeError(f"Cannot serve a {type(target).__name__}: pass a plait Runnable (chain, chat model, "
                            "image model) or a plait.embeddings.Embeddings")
        self.chat_name = config.name or _model_id(target, "plait") if self.chat else None
        self.embeddings_name = (config.name if target is self.embeddings and config.name else
                                _model_id(self.embeddings, "plait-embeddings")) if self.embeddings is not None else None
        self.images_name = (self.chat_name if self.images is target else
                            _model_id(self.images, "plait-images")) if self.images is not None else None

    def parts(self) -> list[Runnable[Any, Any]]:
        """The served objects, each once: the target, its embeddings, its image model."""
        found: dict[int, Runnable[Any, Any]] = {}
        for obj in (self.target, self.embeddings, self.images):
            if obj is not None:
                found.setdefault(id(obj), obj)
        return list(found.values())

    def model_ids(self) -> list[str]:
        ids = [self.chat_name, self.embeddings_name, self.images_name]
        return list(dict.fromkeys(i for i in ids if i))

    def _unknown(self, model: str | None, kind: str, known: str | None) -> APIError:
        if known is None:
            return APIError(404, f"This server has no {kind} model. It serves: {', '.join(self.model_ids())}.",
                            param="model", code="model_not_found")
        return APIError(404, f"The model '{model}' does not exist on this server; use '{known}' "
                             f"(GET /v1/models lists the models).", param="model", code="model_not_found")

    def require_chat(self, model: str) -> ChatTarget:
        if self.chat is None or model != self.chat_name:
            raise self._unknown(model, "chat", self.chat_name)
        return self.chat

    def require_embeddings(self, model: str) -> Embeddings:
        if self.embeddings is None or model != self.embeddings_name:
            raise self._unknown(model, "embeddings", self.embeddings_name)
        return self.embeddings

    def require_images(self, model: str | None) -> ImageModel:
        if self.images is None or (model is not None and model != self.images_name):
            raise self._unknown(model, "image", self.images_name)
        return self.images
