"""LangChain's own suites (``langchain-tests``) for PlaitEmbeddings: unit (construction) and integration
(the bundled all-MiniLM-L6-v2, in process)."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests import EmbeddingsIntegrationTests  # noqa: E402
from langchain_tests.unit_tests import EmbeddingsUnitTests  # noqa: E402

from plait.interop.langchain import PlaitEmbeddings  # noqa: E402


class TestPlaitEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[PlaitEmbeddings]:
        return PlaitEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": "local"}


class TestPlaitEmbeddingsUnitOpenAI(TestPlaitEmbeddingsUnit):
    @property
    def embedding_model_params(self) -> dict:
        return {"model": "openai:text-embedding-3-small", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}


@pytest.mark.integration
class TestPlaitEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[PlaitEmbeddings]:
        return PlaitEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": "local"}


def test_spec_errors_are_clear():
    with pytest.raises(ValueError, match="Unknown embeddings spec"):
        PlaitEmbeddings(model="hub:thing")
    with pytest.raises(ValueError, match="openai:MODEL"):
        PlaitEmbeddings(model="openai:")
    with pytest.raises(ValueError, match="base_url"):
        PlaitEmbeddings(model="local", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError):
        PlaitEmbeddings(model="local", dimensions=3)  # not an argument: refused, never dropped
