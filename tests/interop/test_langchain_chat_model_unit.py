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

    @pytest.fixture(autouse=True)
    def _serdes_loads_only_registered_classes(self, request: pytest.FixtureRequest) -> None:
        if request.node.originalname == "test_serdes":
            request.applymarker(pytest.mark.xfail(strict=True, raises=ValueError, reason=(
                "dumpd matches the snapshot, but langchain-core 1.8's load(allowed_objects='all') admits only "
                "the classes in its own registry (langchain_core.load.mapping), so no third-party class can "
                "pass; load(..., allowed_objects=[PlaitChatModel]) round-trips "
                "(test_langchain_adapters.py::test_serialization_round_trips_with_the_class_allowed)")))

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
