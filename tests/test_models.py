"""Model spec strings (plait/models.py): what each names; nothing loads until first use."""

from __future__ import annotations

import pytest

from plait.chat_model import ChatModel
from plait.embeddings import Embeddings
from plait.image_model import ImageModel
from plait.models import chat_model_from_spec, embeddings_from_spec, image_model_from_spec


def test_image_model_specs() -> None:
    pytest.importorskip("diffusers")
    from plait.defaults import image_model_path
    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel
    from plait.remote.openai_images import OpenAIImageModel

    for spec in ("local", "plait-shapes", f"diffusion:{image_model_path()}"):
        model = image_model_from_spec(spec)
        assert isinstance(model, DiffusersImageModel) and model.model_name == "plait-shapes"
        assert model._pipeline is None  # not loaded yet
    remote = image_model_from_spec("openai:gpt-image-1", base_url="http://127.0.0.1:9/v1", size="256x256")
    assert isinstance(remote, OpenAIImageModel) and isinstance(remote, ImageModel)
    assert remote.model_name == "gpt-image-1" and remote.defaults == {"size": "256x256"}
    assert image_model_from_spec("diffusion:org/some-model", steps=4).defaults["steps"] == 4


def test_embeddings_specs() -> None:
    pytest.importorskip("sentence_transformers")
    from plait.local_models.embeddings.sentence_transformer import default_embeddings
    from plait.remote.openai_embeddings import OpenAIEmbeddings

    assert embeddings_from_spec("local") is default_embeddings()  # the store's and the server's, shared
    other = embeddings_from_spec("local:/models/minilm", batch_size=8)
    assert other is not default_embeddings() and other.batch_size == 8 and other.model_name == "/models/minilm"
    remote = embeddings_from_spec("openai:text-embedding-3-small", base_url="http://127.0.0.1:9/v1")
    assert isinstance(remote, OpenAIEmbeddings) and isinstance(remote, Embeddings)
    assert remote.model_name == "text-embedding-3-small"


def test_chat_model_specs() -> None:
    model = chat_model_from_spec("openai:gpt-4o-mini", base_url="http://127.0.0.1:9/v1", temperature=0)
    assert isinstance(model, ChatModel) and model.model_name == "gpt-4o-mini"


@pytest.mark.parametrize(("make", "spec", "message"), [
    (image_model_from_spec, "nonsense", "Unknown image model spec 'nonsense': use one of local, plait-shapes"),
    (image_model_from_spec, "local:x", "Unknown image model spec"),
    (image_model_from_spec, "diffusion:", "'diffusion' needs a pipeline folder or hub id"),
    (image_model_from_spec, "openai", "'openai' needs a model name"),
    (embeddings_from_spec, "local:", "'local:' needs a model path or hub id"),
    (embeddings_from_spec, "openai:", "'openai' needs a model name"),
    (embeddings_from_spec, "minilm", "Unknown embeddings spec 'minilm'"),
    (chat_model_from_spec, "nonsense:x", "Unknown chat model spec"),
])
def test_bad_specs_say_what_to_write(make, spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(spec)
