"""One server offering chat, embeddings and images, built from ``plait serve`` arguments and spoken
to with the official openai SDK: the embedded plait-shapes model draws, the bundled MiniLM embeds."""

from __future__ import annotations

import argparse
import base64
import io
import os
import signal
import subprocess
import sys

import numpy as np
import openai
import pytest

from plait.commands import serve as serve_cmd
from plait.serve import ServerThread
from plait.serve.server import free_port
from tests.app_support import wait_ready

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on a busy 2-core machine two spinning OpenMP threads run many times slower."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_cmd.configure(parser)
    return parser.parse_args(argv)


def decode_png(b64: str):
    from PIL import Image

    raw = base64.b64decode(b64)
    assert raw.startswith(b"\x89PNG\r\n\x1a\n"), raw[:8]
    return Image.open(io.BytesIO(raw))


def check_images_and_embeddings(client: openai.OpenAI, image_id: str, embeddings_id: str) -> None:
    from plait.local_models.diffusion.shapes_checker import score_many

    captions = ["a red circle at the top left", "a blue square at the bottom"]
    images = []
    for seed, caption in enumerate(captions):
        r = client.images.generate(model=image_id, prompt=caption, response_format="b64_json",
                                   extra_body={"seed": seed})
        (item,) = r.data
        images.append(decode_png(item.b64_json).convert("RGB"))
        assert r.model_extra["parameters"]["seed"] == seed
    assert [im.size for im in images] == [(32, 32), (32, 32)]
    scores = score_many(images, captions)  # the trained model draws what it is told (colour, shape)
    assert scores["color_acc"] == 1.0 and scores["shape_acc"] == 1.0, scores

    texts = ["A cat sat on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply today."]
    r = client.embeddings.create(model=embeddings_id, input=texts)
    vectors = np.array([d.embedding for d in r.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_one_server_offers_chat_embeddings_and_the_embedded_image_model() -> None:
    args = parse(["tests.serve.apps:chat", "--embeddings", "local", "--image-model", "local"])
    app = serve_cmd.build_app(args, api_key=None)
    with ServerThread(app) as server:
        ready = wait_ready(server.url)
        assert ready == {"status": "ready", "models": ["fake", "plait-embeddings", "plait-shapes"]}
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=300)
        check_images_and_embeddings(client, "plait-shapes", "plait-embeddings")
        reply = client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "Hello from plait."


def test_serve_arguments_pick_the_served_kinds() -> None:
    served = serve_cmd.build_app(parse(["--image-model", "local"]), None).state.served
    assert served.images is served.target and served.chat is not None and served.embeddings is None
    served = serve_cmd.build_app(parse(["--embeddings", "openai:text-embedding-3-small"]), None).state.served
    assert served.chat is None and served.model_ids() == ["text-embedding-3-small"]
    served = serve_cmd.build_app(parse(["--model", "openai:gpt-4o-mini", "--image-model", "openai:gpt-image-1"]),
                                 None).state.served
    assert served.model_ids() == ["gpt-4o-mini", "gpt-image-1"]
    for argv, message in [(["--image-model", "nonsense"], "Unknown image model spec 'nonsense'"),
                          (["--image-model", "diffusion:"], "'diffusion' needs a pipeline folder"),
                          (["--embeddings", "openai:"], "'openai' needs a model name"),
                          (["--embeddings", "elsewhere:x"], "Unknown embeddings spec")]:
        with pytest.raises(SystemExit, match=message):
            serve_cmd.build_app(parse(argv), None)


@pytest.mark.slow
def test_cli_serves_the_local_chat_embeddings_and_image_models_on_one_port() -> None:
    """``plait serve --model local --embeddings local --image-model local`` in its own process."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-m", "plait.cli", "serve", "--model", "local", "--embeddings", "local",
                             "--image-model", "local", "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        ready = wait_ready(url, proc)
        assert ready["status"] == "ready", ready
        chat_id, embeddings_id, image_id = ready["models"]
        assert (embeddings_id, image_id) == ("plait-embeddings", "plait-shapes")
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=300)
        check_images_and_embeddings(client, image_id, embeddings_id)
        reply = client.chat.completions.create(model=chat_id, max_tokens=20, temperature=0,
                                               messages=[{"role": "user", "content": "What is the capital of France?"}])
        assert "Paris" in reply.choices[0].message.content
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
