"""LangChain's own integration suite (``langchain-tests``) for PlaitChatModel on the bundled local model,
in process (SmolLM2-135M, greedy)."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests import ChatModelIntegrationTests  # noqa: E402

from plait.interop.langchain import PlaitChatModel  # noqa: E402

pytestmark = pytest.mark.integration


class TestPlaitChatModelLocal(ChatModelIntegrationTests):
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
        return False
