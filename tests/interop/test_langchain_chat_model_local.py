"""LangChain's own integration suite (``langchain-tests``) for PlaitChatModel on the bundled local model,
in process (SmolLM2-135M, greedy, constrained decoding for tools and JSON).

The whole suite is ``slow`` (about 50 generations); ``TestPlaitChatModelLocalQuick`` runs a few of its
tests in the default run. Tests the model fails for want of skill are xfail with the cause
(``SMOLLM2_LIMITS``; listed in docs/interop.md)."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests import ChatModelIntegrationTests  # noqa: E402

from plait.interop.langchain import PlaitChatModel  # noqa: E402
from tests.interop.lc_suites import SMOLLM2_LIMITS, ModelLimits, quick  # noqa: E402

pytestmark = pytest.mark.integration

class _LocalSuite(ModelLimits, ChatModelIntegrationTests):
    model_limits = SMOLLM2_LIMITS

    @property
    def chat_model_class(self) -> type[PlaitChatModel]:
        return PlaitChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"model": "local", "temperature": 0, "max_tokens": 160}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False  # a call's model= is refused: a plait model is one model


@pytest.mark.slow
class TestPlaitChatModelLocal(_LocalSuite):
    pass


@quick("test_invoke", "test_stream", "test_usage_metadata", "test_stop_sequence", "test_tool_calling[model0]",
       "test_structured_output[pydantic]", "test_structured_output[json_schema]")
class TestPlaitChatModelLocalQuick(_LocalSuite):
    pass
