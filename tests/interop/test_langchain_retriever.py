"""LangChain's own integration suite (``langchain-tests``) for PlaitRetriever: over a PlaitVectorStore
(hybrid, dense, BM25) and over a plait retriever, with real Chroma and the bundled MiniLM."""

from __future__ import annotations

import uuid

import pytest

pytest.importorskip("langchain_tests")

from langchain_core.documents import Document  # noqa: E402
from langchain_tests.integration_tests import RetrieversIntegrationTests  # noqa: E402

from plait.interop.langchain import PlaitRetriever, PlaitVectorStore  # noqa: E402

pytestmark = pytest.mark.integration

TEXTS = ["Cats purr when they are content.", "Dogs bark at strangers.", "Parrots can imitate speech.",
         "Goldfish live in bowls of water.", "Horses sleep standing up.", "Cows chew the cud."]
_STORES: dict[str, PlaitVectorStore] = {}


def pets_store() -> PlaitVectorStore:
    """One filled store for the module (the suite builds many retrievers over it)."""
    if "pets" not in _STORES:
        store = PlaitVectorStore(collection_name=f"pets-{uuid.uuid4().hex[:8]}")
        store.add_documents([Document(page_content=t, metadata={"n": i}) for i, t in enumerate(TEXTS)])
        _STORES["pets"] = store
    return _STORES["pets"]


class TestPlaitRetrieverHybrid(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[PlaitRetriever]:
        return PlaitRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"vectorstore": pets_store(), "search_type": "hybrid"}

    @property
    def retriever_query_example(self) -> str:
        return "Which animal purrs?"


class TestPlaitRetrieverDense(TestPlaitRetrieverHybrid):
    @property
    def retriever_constructor_params(self) -> dict:
        return {"vectorstore": pets_store(), "search_type": "similarity"}


class TestPlaitRetrieverOverPlaitRetriever(TestPlaitRetrieverHybrid):
    """retriever=<a plait retriever built by hand>: BM25 over the same store."""

    @property
    def retriever_constructor_params(self) -> dict:
        from plait.retrievers.bm25 import BM25Retriever

        return {"retriever": BM25Retriever(pets_store().store.lexical_index, k=2)}

    @property
    def retriever_query_example(self) -> str:
        return "animal cats dogs parrots goldfish horses cows"
