"""LangChain's own unit suite (``langchain-tests``) for PlaitChatModel: construction, tool binding,
structured output, tracing parameters, serialization. No generation: these run in the default run."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_tests")

from langchain_tests.unit_tests import ChatModelUnitTests  # noqa: E402

from plait.interop.langchain import PlaitChatModel  # noqa: E402


class TestPlaitChatModelUnit(ChatModelUnitTests):
    """The bundled local model by spec string (weights are never loaded here)."""

    @property
    def chat_model_class(self) -> type[PlaitChatModel]:
        return PlaitChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"model": "local"}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False  # a call's model= is refused: a plait model is one model


class TestPlaitChatModelUnitOpenAI(TestPlaitChatModelUnit):
    """plait's OpenAI backend by spec string, configured from the environment as LangChain expects."""

    @property
    def chat_model_params(self) -> dict:
        return {"model": "openai:plait-local", "base_url": "http://127.0.0.1:9/v1"}

    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        return ({"OPENAI_API_KEY": "key-from-env", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
                {"model": "openai:plait-local"},
                {"api_key": "key-from-env", "base_url": "http://127.0.0.1:9/v1"})
