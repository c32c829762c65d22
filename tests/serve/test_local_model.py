"""The bundled local model served and asked through the OpenAI SDK (slow: loads SmolLM2)."""

from __future__ import annotations

import openai
import pytest


@pytest.mark.slow
@pytest.mark.integration
def test_local_model_answers_through_the_server(serve):
    models = pytest.importorskip("plait.models")
    model = models.chat_model_from_spec("local")
    server = serve(model, name="local")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=300)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model="local", messages=question, max_tokens=20, temperature=0)
    assert "Paris" in r.choices[0].message.content
    assert r.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(model="local", messages=question, max_tokens=20,
                                                 temperature=0, stream=True))
    assert "Paris" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
