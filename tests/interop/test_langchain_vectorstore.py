"""LangChain's own integration suite (``langchain-tests``) for PlaitVectorStore: a real in-memory Chroma
collection with plait's BM25 twin, the suite's deterministic fake embeddings (LangChain ones)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

from plait.interop.langchain import PlaitVectorStore  # noqa: E402

pytestmark = pytest.mark.integration


class TestPlaitVectorStore(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self) -> Iterator[PlaitVectorStore]:
        store = PlaitVectorStore(collection_name=f"lc-suite-{uuid.uuid4().hex[:8]}", embedding=self.get_embeddings())
        yield store
        store.delete_collection()


class TestPlaitVectorStorePersistent(VectorStoreIntegrationTests):
    """The same suite on an embedded, persistent store (a folder on disk)."""

    @pytest.fixture
    def vectorstore(self, tmp_path) -> Iterator[PlaitVectorStore]:
        store = PlaitVectorStore(collection_name="lc-suite", embedding=self.get_embeddings(),
                                 persist_directory=str(tmp_path / "chroma"))
        yield store
        store.delete_collection()
