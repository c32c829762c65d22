"""OpenAIEmbeddings and OpenAIImageModel against the test server (real HTTP, official SDK); the
image-model contract on OpenAIImageModel."""

from __future__ import annotations

import math

import pytest

from plait.embeddings import Embeddings
from plait.messages import ImageResult
from plait.remote._openai import RemoteModelError
from plait.remote.openai_embeddings import OpenAIEmbeddings
from plait.remote.openai_images import OpenAIImageModel
from plait.runnable import Lambda
from tests.image_model_contract import ImageModelContract
from tests.remote.openai_server import OpenAIServer, embed


@pytest.fixture
def emb(server: OpenAIServer) -> OpenAIEmbeddings:
    return OpenAIEmbeddings("test-embed", base_url=server.base_url, api_key=server.api_key, batch_size=3,
                            max_retries=1)


@pytest.fixture
def images(server: OpenAIServer) -> OpenAIImageModel:
    return OpenAIImageModel("test-image", base_url=server.base_url, api_key=server.api_key, size="32x32")


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


TEXTS = ["the cat sat on the mat", "a cat on a mat", "stock markets fell sharply", "dogs bark", "rain today",
         "the mat is red", "cats and mats"]


def test_embed_documents_batches_and_keeps_order(emb: OpenAIEmbeddings, server: OpenAIServer) -> None:
    vectors = emb.embed_documents(TEXTS)
    assert len(vectors) == len(TEXTS)
    for text, vec in zip(TEXTS, vectors, strict=True):  # decoded from the SDK's base64 encoding
        assert vec == pytest.approx(embed(text, 16), abs=1e-6)
    sent = [r.body["input"] for r in server.requests if r.path.endswith("/embeddings")]
    assert sorted(sent) == sorted([TEXTS[0:3], TEXTS[3:6], TEXTS[6:7]])  # sent concurrently: in any order
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])


def test_embed_query_and_the_runnable_side(emb: OpenAIEmbeddings) -> None:
    assert isinstance(emb, Embeddings)
    query = emb.embed_query("cat on the mat")
    assert len(query) == 16
    assert emb.invoke("cat on the mat") == query
    assert emb.invoke(["cat on the mat", "dogs bark"])[0] == query
    chain = Lambda(str.lower) | emb
    assert chain.invoke("CAT ON THE MAT") == query


async def test_async_embeddings_match_sync(emb: OpenAIEmbeddings) -> None:
    assert await emb.aembed_documents(TEXTS) == emb.embed_documents(TEXTS)
    assert await emb.aembed_query("rain today") == emb.embed_query("rain today")
    assert await emb.ainvoke("rain today") == emb.embed_query("rain today")


def test_dimensions_are_sent(server: OpenAIServer) -> None:
    emb = OpenAIEmbeddings("test-embed", base_url=server.base_url, api_key=server.api_key, dimensions=8)
    assert len(emb.embed_query("hello world")) == 8
    assert server.requests[-1].body["dimensions"] == 8


def test_empty_text_is_refused_before_sending(emb: OpenAIEmbeddings, server: OpenAIServer) -> None:
    with pytest.raises(ValueError, match=r"Text #1 .* empty"):
        emb.embed_documents(["fine", "  "])
    assert not server.requests


def test_embedding_faults(emb: OpenAIEmbeddings, server: OpenAIServer) -> None:
    server.fault("status", status=502)
    assert len(emb.embed_documents(["a b"])) == 1  # retried
    server.fault("malformed_json")
    with pytest.raises(RemoteModelError, match="not valid OpenAI-format JSON"):
        emb.embed_query("a b")
    bad = OpenAIEmbeddings("missing-model", base_url=server.base_url, api_key=server.api_key)
    with pytest.raises(RemoteModelError, match="no model 'missing-model' or no embeddings endpoint"):
        bad.embed_query("x")


def test_embed_array_is_float32_from_the_remote_vectors(emb: OpenAIEmbeddings) -> None:
    import numpy as np

    array = emb.embed_array(TEXTS[:4])
    assert array.dtype == np.float32 and array.shape == (4, 16)
    assert np.allclose(array, emb.embed_documents(TEXTS[:4]), atol=1e-6)
    assert emb.model_name == "test-embed"


class TestOpenAIImageContract(ImageModelContract):
    size = (48, 24)

    @pytest.fixture
    def model(self, images: OpenAIImageModel) -> OpenAIImageModel:
        return images


def test_image_from_a_prompt(images: OpenAIImageModel, server: OpenAIServer) -> None:
    result = images.invoke("a red lighthouse")
    assert isinstance(result, ImageResult) and result.model == "test-image"
    (img,) = result.images
    assert img.size == (32, 32)
    assert result.parameters == {"prompt": "a red lighthouse", "size": "32x32", "num_images": 1}
    body = server.requests[-1].body
    assert body["response_format"] == "b64_json" and "seed" not in body


def test_image_parameters_from_a_dict(images: OpenAIImageModel, server: OpenAIServer) -> None:
    result = images.invoke({"prompt": "two boats", "width": 48, "height": 24, "n": 2, "seed": 5})
    assert [i.size for i in result.images] == [(48, 24), (48, 24)]
    assert result.images[0].getpixel((0, 0)) != result.images[1].getpixel((0, 0))
    assert result.parameters["seed"] == 5 and result.parameters["size"] == "48x24"
    assert server.requests[-1].body["seed"] == 5  # sent as an extra for servers that take it
    again = images.invoke({"prompt": "two boats", "size": "48x24", "num_images": 2, "seed": 5})
    assert again.images[0].tobytes() == result.images[0].tobytes()


async def test_image_async_and_in_a_chain(images: OpenAIImageModel) -> None:
    chain = Lambda(lambda topic: f"a poster about {topic}") | images
    result = await chain.ainvoke("bicycles")
    assert result.parameters["prompt"] == "a poster about bicycles"


def test_bad_image_requests_say_what_is_wrong(images: OpenAIImageModel) -> None:
    with pytest.raises(ValueError, match=r"colour: Extra inputs.*Known parameters"):
        images.invoke({"prompt": "x", "colour": "red"})
    with pytest.raises(ValueError, match="both width and height"):
        images.invoke({"prompt": "x", "width": 64})
    with pytest.raises(ValueError, match="num_images: Input should be less than or equal to 10"):
        images.invoke({"prompt": "x", "n": 11})
    with pytest.raises(TypeError, match="takes a prompt string"):
        images.invoke(42)


def test_batches_spread_over_several_urls_and_fail_over(server: OpenAIServer) -> None:
    from tests.retrievers.conftest import free_port

    with OpenAIServer() as other:
        dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: connection refused
        emb = OpenAIEmbeddings("test-embed", base_url=[server.base_url, other.base_url, dead], api_key="test-key",
                               batch_size=2, max_concurrency=3, max_retries=2, rest=30.0)
        vectors = emb.embed_documents(TEXTS * 3)
        assert vectors == [pytest.approx(embed(t, 16), abs=1e-6) for t in TEXTS * 3]  # in order
        sizes = [len(r.body["input"]) for s in (server, other) for r in s.requests]
        assert sum(sizes) == 3 * len(TEXTS)  # the dead URL's batches went to the others, each once
        assert server.requests and other.requests
        server.fault("status", status=503, times=50)  # now the first one fails too: everything goes to `other`
        before = len(other.requests)
        assert emb.embed_documents(TEXTS) == emb.embed_documents(TEXTS)
        assert len(other.requests) - before == 2 * 4
    emb = OpenAIEmbeddings("test-embed", base_url=[dead], api_key="x", max_retries=1, rest=0.1, timeout=5)
    with pytest.raises(RemoteModelError, match=r"127\.0\.0\.1"):
        emb.embed_query("nobody answers")
