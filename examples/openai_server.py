"""Switching to an OpenAI-compatible server: the same chain, only the model spec changes.

By default this starts ``plait serve``'s app on 127.0.0.1 (serving the bundled local model) in
a background thread, so it runs offline. Point it at any OpenAI-compatible server instead (vLLM,
TGI, Ollama, OpenAI) by setting ``OPENAI_BASE_URL`` (and ``OPENAI_API_KEY``, ``OPENAI_MODEL``).

Run: python examples/openai_server.py
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from plait import ChatPromptTemplate, StrOutputParser
from plait.models import chat_model_from_spec

try:
    from examples._model import example_model
except ImportError:
    from _model import example_model  # type: ignore[no-redef]


@contextlib.contextmanager
def openai_endpoint(model: Any = None) -> Iterator[tuple[str, str]]:
    """(base URL, API key): $OPENAI_BASE_URL if set, else a local plait server started here."""
    if os.environ.get("OPENAI_BASE_URL"):
        yield os.environ["OPENAI_BASE_URL"], os.environ.get("OPENAI_API_KEY", "none")
        return
    from plait.serve import ServerThread, create_app

    app = create_app(example_model(model), api_key="example-key")
    with ServerThread(app) as server:  # 127.0.0.1, a free port
        yield server.url + "/v1", "example-key"


def main(model: Any = None) -> str:
    import openai

    with openai_endpoint(model) as (base_url, api_key):
        client = openai.OpenAI(base_url=base_url, api_key=api_key)
        model_id = os.environ.get("OPENAI_MODEL") or client.models.list().data[0].id
        print(f"server {base_url} serves {model_id!r}")

        # the quickstart chain, with the model spec switched to the server
        remote = chat_model_from_spec(f"openai:{model_id}", base_url=base_url, api_key=api_key, max_tokens=40)
        prompt = ChatPromptTemplate.from_messages([("system", "Answer in one sentence."), ("user", "{question}")])
        chain = prompt | remote | StrOutputParser()
        answer = ""
        for token in chain.stream({"question": "What is the largest planet in the solar system?"}):
            print(token, end="", flush=True)
            answer += token
        print()
        return answer


if __name__ == "__main__":
    main()
