"""``/v1/embeddings`` and ``/v1/images/generations`` through the official SDK and plait's own remote backends.

The image model served here is a real :class:`OpenAIImageModel` talking to the test OpenAI server
(tests/remote/openai_server.py); the bundled plait-shapes model is served in test_bundled_models.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import httpx
import numpy as np
import openai
import pytest

from plait.fake import FakeChatModel
from plait.remote.openai_embeddings import OpenAIEmbeddings
from plait.remote.openai_images import OpenAIImageModel
from plait.serve import create_app
from tests.remote.openai_server import OpenAIServer
from tests.serve.apps import LetterCounts


def remote_images(upstream: OpenAIServer, **defaults) -> OpenAIImageModel:
    return OpenAIImageModel("test-image", base_url=upstream.base_url, api_key=upstream.api_key, **defaults)


def decode(b64: str):
    from PIL import Image

    raw = base64.b64decode(b64)
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(raw))


def test_embeddings_float_and_base64(serve):
    emb = LetterCounts()
    server = serve(emb)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    texts = ["abc", "hello world", "zzz"]
    r = client.embeddings.create(model="letters", input=texts)  # the SDK asks for base64 and decodes it
    assert [d.index for d in r.data] == [0, 1, 2]
    for got, want in zip(r.data, emb.embed_documents(texts), strict=True):
        assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(got.embedding, want, strict=True))
    raw = httpx.post(server.url + "/v1/embeddings",
                     json={"model": "letters", "input": "abc", "encoding_format": "float"}).json()
    assert raw["object"] == "list" and raw["data"][0]["embedding"] == emb.embed_query("abc")
    assert raw["usage"]["prompt_tokens"] == 1
    assert [m.id for m in client.models.list().data] == ["letters"]
    bad = httpx.post(server.url + "/v1/embeddings", json={"model": "letters", "input": []})
    assert bad.status_code == 400 and "input" in bad.json()["error"]["message"]
    bad = httpx.post(server.url + "/v1/embeddings", json={"model": "letters", "input": [1, 2]})
    assert bad.status_code == 400


def test_embed_array_is_part_of_the_interface():
    vectors = LetterCounts().embed_array(["abc", "hello world"])
    assert vectors.dtype == np.float32 and vectors.shape == (2, 26)
    assert np.allclose(vectors[1], LetterCounts().embed_query("hello world"))


def test_plait_openai_embeddings_backend(serve):
    server = serve(LetterCounts())
    emb = OpenAIEmbeddings("letters", base_url=server.url + "/v1", api_key="x")
    vec = emb.embed_query("banana")
    assert math.isclose(vec[0], LetterCounts().embed_query("banana")[0], rel_tol=1e-6)


def test_kinds_are_the_declared_interfaces_not_method_names(upstream):
    class LooksLikeEmbeddings:  # the right method names, but not an Embeddings
        def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
            return [[1.0] for _ in texts]

        def embed_query(self, text: str) -> list[float]:
            return [1.0]

    with pytest.raises(TypeError, match="Cannot serve a LooksLikeEmbeddings"):
        create_app(LooksLikeEmbeddings())
    with pytest.raises(TypeError, match="embeddings= must be a plait.embeddings.Embeddings"):
        create_app(FakeChatModel(["hi"]), embeddings=LooksLikeEmbeddings())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="images= must be a plait.image_model.ImageModel"):
        create_app(FakeChatModel(["hi"]), images=FakeChatModel(["no"]))  # type: ignore[arg-type]
    served = create_app(remote_images(upstream)).state.served
    assert served.images is served.target and served.model_ids() == ["test-image"]


def test_a_remote_image_model_is_served(serve, upstream):
    """The bug this guards: a real image model class (not a stub with a flag) behind the images route."""
    model = remote_images(upstream)
    server = serve(model)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    r = client.images.generate(model="test-image", prompt="a green square", n=2, size="8x4",
                               response_format="b64_json", extra_body={"seed": 3})
    assert len(r.data) == 2
    images = [decode(d.b64_json) for d in r.data]
    direct = model.invoke({"prompt": "a green square", "num_images": 2, "width": 8, "height": 4, "seed": 3})
    for got, want in zip(images, direct.images, strict=True):
        assert got.size == (8, 4) and got.convert("RGB").tobytes() == want.convert("RGB").tobytes()
    assert r.model_extra["parameters"]["num_images"] == 2 and r.model_extra["parameters"]["seed"] == 3
    with pytest.raises(openai.BadRequestError, match="b64_json"):
        client.images.generate(model="test-image", prompt="x", response_format="url")
    with pytest.raises(openai.BadRequestError, match="less than or equal to 10"):  # the model's own error, as a 400
        client.images.generate(model="test-image", prompt="x", n=12)
    with pytest.raises(openai.BadRequestError, match="size"):
        client.images.generate(model="test-image", prompt="x", size="big")
    with pytest.raises(openai.NotFoundError, match="use 'test-image'"):
        client.images.generate(model="dall-e-3", prompt="x")
    # plait's own client for the images API, against this server
    again = OpenAIImageModel("test-image", base_url=server.url + "/v1", api_key="x").invoke(
        {"prompt": "a green square", "size": "8x4", "seed": 3})
    assert again.images[0].convert("RGB").tobytes() == direct.images[0].convert("RGB").tobytes()


def test_chat_model_with_embeddings_and_images_side_by_side(serve, upstream):
    server = serve(FakeChatModel(["hi"]), embeddings=LetterCounts(), images=remote_images(upstream, size="16x16"))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    assert sorted(m.id for m in client.models.list().data) == ["fake", "letters", "test-image"]
    assert client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "x"}]).choices
    assert len(client.embeddings.create(model="letters", input="abc").data[0].embedding) == 26
    r = client.images.generate(model="test-image", prompt="a boat", response_format="b64_json")
    assert decode(r.data[0].b64_json).size == (16, 16)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="fake", input="abc")
    with pytest.raises(openai.NotFoundError, match="use 'test-image'"):
        client.images.generate(model="fake", prompt="x")


def test_an_image_model_answers_chat_with_inline_images(serve, upstream):
    server = serve(remote_images(upstream, size="8x8"))
    r = httpx.post(server.url + "/v1/chat/completions",
                   json={"model": "test-image", "messages": [{"role": "user", "content": "a red kite"}]}).json()
    message = r["choices"][0]["message"]
    assert message["content"] == "Generated 1 image for: a red kite"
    assert decode(r["images"][0]["b64_json"]).size == (8, 8)
