"""What an app serves: a chat target, and optionally embeddings and an image model, by model id.

Kinds are recognised by what an object can do, not by importing backends:
- embeddings: has ``embed_documents`` and ``embed_query`` (the retrieval embeddings interface);
- image model: its class (or a base) is named ``ImageModel``, or it sets ``produces_images = True``;
- anything else that is a Runnable (chat model, chain) answers chat completions.
An image model also answers chat completions (the prompt is the last user message; the images
come back in the extra ``images`` field), which is how the web page shows them inline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plait.runnable import Runnable
from plait.serve.adapters import ChatTarget
from plait.serve.config import ServeConfig
from plait.serve.errors import APIError


def is_embeddings(obj: Any) -> bool:
    return callable(getattr(obj, "embed_documents", None)) and callable(getattr(obj, "embed_query", None))


def is_image_model(obj: Any) -> bool:
    return bool(getattr(obj, "produces_images", False)) or any(
        c.__name__ == "ImageModel" for c in type(obj).__mro__)


def _model_id(obj: Any, fallback: str) -> str:
    name = getattr(obj, "model_name", None)
    return name if isinstance(name, str) and name else fallback


@dataclass
class ServeState:
    """Lifecycle flags read by ``/ready``: set by the lifespan and by the server on shutdown."""

    ready: bool = False
    draining: bool = False
    warm_up_error: str | None = None


class Served:
    """The objects behind one app, each under its model id."""

    def __init__(self, target: Any, config: ServeConfig, *, embeddings: Any = None, images: Any = None) -> None:
        self.config = config
        self.target = target
        self.chat: ChatTarget | None = None
        self.embeddings = embeddings
        self.images = images
        if is_embeddings(target) and embeddings is None and not is_image_model(target):
            self.embeddings = target
        elif isinstance(target, Runnable):
            if is_image_model(target) and images is None:
                self.images = target
            self.chat = ChatTarget(target, config)
        else:
            raise TypeError(f"Cannot serve a {type(target).__name__}: pass a plait Runnable (chain, chat model, "
                            "image model) or an embeddings object with embed_documents/embed_query")
        if self.embeddings is not None and not is_embeddings(self.embeddings):
            raise TypeError(f"embeddings= must have embed_documents and embed_query; got {type(embeddings).__name__}")
        only = target if self.chat is None else None
        self.chat_name = config.name or _model_id(target, "plait") if self.chat else None
        self.embeddings_name = (config.name if only is self.embeddings and config.name else
                                _model_id(self.embeddings, "plait-embeddings")) if self.embeddings is not None else None
        self.images_name = (self.chat_name if self.images is target else
                            _model_id(self.images, "plait-images")) if self.images is not None else None

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

    def require_embeddings(self, model: str) -> Any:
        if self.embeddings is None or model != self.embeddings_name:
            raise self._unknown(model, "embeddings", self.embeddings_name)
        return self.embeddings

    def require_images(self, model: str | None) -> Any:
        if self.images is None or (model is not None and model != self.images_name):
            raise self._unknown(model, "image", self.images_name)
        return self.images
