"""``/v1/embeddings`` and ``/v1/images/generations`` through the official SDK and plait's own remote backends."""

from __future__ import annotations

import base64
import io
import math

import httpx
import openai
import pytest

from plait.fake import FakeChatModel
from tests.serve.apps import LetterCounts, SquarePainter


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


def test_plait_openai_embeddings_backend(serve):
    remote = pytest.importorskip("plait.remote.openai_embeddings")
    server = serve(LetterCounts())
    emb = remote.OpenAIEmbeddings("letters", base_url=server.url + "/v1", api_key="x")
    vec = emb.embed_query("banana")
    assert math.isclose(vec[0], LetterCounts().embed_query("banana")[0], rel_tol=1e-6)


def test_chat_model_with_embeddings_and_images_side_by_side(serve):
    server = serve(FakeChatModel(["hi"]), embeddings=LetterCounts(), images=SquarePainter())
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    assert sorted(m.id for m in client.models.list().data) == ["fake", "letters", "painter"]
    assert client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "x"}]).choices
    assert len(client.embeddings.create(model="letters", input="abc").data[0].embedding) == 26
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="fake", input="abc")


def test_image_generation_b64(serve):
    from PIL import Image

    server = serve(SquarePainter())
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    r = client.images.generate(model="painter", prompt="a green square", n=2, size="8x4", response_format="b64_json")
    assert len(r.data) == 2
    img = Image.open(io.BytesIO(base64.b64decode(r.data[0].b64_json)))
    assert img.size == (8, 4) and img.convert("RGB").getpixel((0, 0)) == (0, 128, 0)
    assert r.model_extra["parameters"]["num_images"] == 2
    with pytest.raises(openai.BadRequestError, match="b64_json"):
        client.images.generate(model="painter", prompt="x", response_format="url")
    with pytest.raises(openai.BadRequestError, match="out of range"):  # the model's own error, as a 400
        client.images.generate(model="painter", prompt="x", size="1000x1000")
    with pytest.raises(openai.BadRequestError, match="size"):
        client.images.generate(model="painter", prompt="x", size="big")


def test_plait_openai_image_backend(serve):
    remote = pytest.importorskip("plait.remote.openai_images")
    server = serve(SquarePainter())
    model = remote.OpenAIImageModel("painter", base_url=server.url + "/v1", api_key="x")
    result = model.invoke({"prompt": "a red square", "size": "16x16"})
    assert result.images[0].convert("RGB").getpixel((1, 1)) == (255, 0, 0)
