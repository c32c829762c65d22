"""The retriever contract: implement hits() (and load() for hits without documents); the base does the rest."""

from __future__ import annotations

import pytest

from plait.messages import Document
from plait.retrievers.base import Hit, Retriever, document_id, to_retriever

TEXTS = {"a": "alpha", "b": "beta", "c": "gamma"}


class IdsOnly(Retriever):
    """Hits without their documents, as a fast index gives them; load() fetches the kept ones."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.loaded = []

    def hits(self, query, *, k, filter=None):
        return [Hit(i, 1.0 - n / 10, {"n": n}) for n, i in enumerate(["a", "gone", "b", "c"])][:k]

    def load(self, ids):
        self.loaded.append(list(ids))
        return [Document(id=i, content=TEXTS[i], metadata={"kept": True}) for i in ids if i in TEXTS]


def test_hits_become_scored_documents_and_only_the_kept_are_loaded():
    r = IdsOnly(k=3)
    docs = r.invoke("q")
    assert [(d.id, d.content, d.score) for d in docs] == [("a", "alpha", 1.0), ("b", "beta", 0.8)]  # gone: left out
    assert r.loaded == [["a", "gone", "b"]]
    assert [d.id for d in r.invoke("q", k=4, score_threshold=0.75)] == ["a", "b"]
    assert r.loaded[-1] == ["a", "gone", "b"]  # below the threshold: never loaded
    with pytest.raises(TypeError, match="Unknown retriever option"):
        r.invoke("q", top_k=2)


def test_a_retriever_must_say_how_to_load_hits_without_documents():
    class NoLoad(Retriever):
        def hits(self, query, *, k, filter=None):
            return [Hit("x", 1.0, {})]

    with pytest.raises(NotImplementedError, match="has no load"):
        NoLoad().invoke("q")
    with pytest.raises(NotImplementedError, match="must implement hits"):
        Retriever().invoke("q")


def test_any_function_becomes_a_retriever():
    docs = [Document(content="one", metadata={"lang": "en"}), Document(content="deux", metadata={"lang": "fr"})]
    r = to_retriever(lambda q: docs)
    assert to_retriever(r) is r
    assert [d.content for d in r.invoke("q")] == ["one", "deux"]  # all it returns, unless k cuts
    assert [d.content for d in r.invoke("q", k=1)] == ["one"]
    assert [d.content for d in r.invoke("q", filter={"lang": "fr"})] == ["deux"]
    [hit] = r.hits("q", k=1)
    assert hit.id == document_id(docs[0]) and hit.document is docs[0]  # a stable id for id-less documents
