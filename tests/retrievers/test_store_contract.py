"""The contract every vector store backend passes: embedded (persistent), in memory, and a real Chroma server."""

from __future__ import annotations

import pytest

from plait.messages import Document
from plait.retrievers.base import Retriever
from tests.retrievers.conftest import CORPUS, corpus_docs

pytestmark = pytest.mark.integration


@pytest.fixture
def store(make_store, corpus_vectors):
    s = make_store()
    s.upsert(corpus_docs(), embeddings=corpus_vectors)
    return s


def test_upsert_count_get(store):
    assert store.count() == len(CORPUS)
    got = store.get(["dog-1", "cat-1", "missing"])
    assert {d.id for d in got} == {"dog-1", "cat-1"}
    dog = next(d for d in got if d.id == "dog-1")
    assert dog.content.startswith("Dogs bark")
    assert dog.metadata == {"topic": "dogs", "year": 2020, "lang": "en"}
    assert store.ids() == sorted(i for i, _, _ in CORPUS)


def test_upsert_same_id_replaces(store):
    store.upsert([Document(id="dog-1", content="Dogs howl at the moon.", metadata={"topic": "dogs", "year": 2025})])
    assert store.count() == len(CORPUS)
    assert store.get(["dog-1"])[0].content == "Dogs howl at the moon."
    # the BM25 twin follows: the old words are gone, the new ones found
    assert [d.id for d in store.lexical_search("howl moon", k=3)] == ["dog-1"]
    assert "dog-1" not in [d.id for d in store.lexical_search("strangers warn", k=3)]


def test_ids_default_to_stable_content_hash(make_store):
    s = make_store()
    a = s.upsert([Document(content="same text", metadata={"n": 1})])
    b = s.upsert([Document(content="same text", metadata={"n": 1})])
    assert a == b and s.count() == 1
    with pytest.raises(ValueError, match="share the id"):
        s.upsert([Document(id="x", content="a"), Document(id="x", content="b")])


def test_delete_by_ids_and_filter(store):
    assert store.delete(["cat-1"]) == 1
    assert store.count() == len(CORPUS) - 1
    store.delete(filter={"topic": "cooking"})
    assert store.count() == len(CORPUS) - 3
    assert not store.get(filter={"topic": "cooking"})
    assert not [d for d in store.lexical_search("tomato basil bread", k=5)]
    assert "cat-1" not in [d.id for d in store.lexical_search("cats purr", k=5)]
    with pytest.raises(ValueError, match="needs ids or a filter"):
        store.delete()


def test_similarity_scores(store):
    docs = store.similarity_search("Cats purr when they are content and relaxed.", k=3)
    assert docs[0].id == "cat-1"
    assert docs[0].score == pytest.approx(1.0, abs=1e-3)
    scores = [d.score for d in docs]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0001 for s in scores)
    assert store.similarity_search("space telescope galaxies", k=1)[0].id == "space-1"


@pytest.mark.parametrize(("where", "expected"), [
    ({"topic": "cats"}, {"cat-1", "cat-2", "fr-1"}),
    ({"year": {"$gte": 2022}}, {"dog-2", "space-1", "part-1", "fr-1"}),
    ({"year": {"$lt": 2020}}, {"cat-1", "cook-1"}),
    ({"year": {"$gt": 2022}}, {"dog-2", "part-1"}),
    ({"year": {"$lte": 2018}}, {"cook-1"}),
    ({"topic": {"$ne": "cats"}, "lang": "en"}, {"dog-1", "dog-2", "space-1", "space-2", "cook-1", "cook-2",
                                                 "part-1"}),
    ({"topic": {"$in": ["dogs", "space"]}}, {"dog-1", "dog-2", "space-1", "space-2"}),
    ({"topic": {"$nin": ["dogs", "space", "cooking", "parts"]}}, {"cat-1", "cat-2", "fr-1"}),
    ({"$and": [{"topic": "cats"}, {"lang": "en"}]}, {"cat-1", "cat-2"}),
    ({"$or": [{"topic": "parts"}, {"year": {"$eq": 2018}}]}, {"part-1", "cook-1"}),
    ({"$or": [{"$and": [{"topic": "cats"}, {"year": 2022}]}, {"topic": "parts"}]}, {"fr-1", "part-1"}),
])
def test_filters_same_on_every_path(store, where, expected):
    assert {d.id for d in store.get(filter=where)} == expected
    dense = store.similarity_search("animals and things", k=20, filter=where)
    assert {d.id for d in dense} == expected
    for retriever in (store.as_retriever("dense", k=20, filter=where),
                      store.as_retriever("hybrid", k=20, filter=where)):
        assert {d.id for d in retriever.invoke("animals and things")} == expected
    # BM25 leaves out chunks sharing no term with the query, but never breaks the filter
    lexical = store.lexical_search("cats dogs telescope rovers tomato bread part chat", k=20, filter=where)
    assert {d.id for d in lexical} <= expected and lexical


def test_mmr_prefers_diverse_results(make_store):
    s = make_store()
    s.upsert([
        Document(id="a", content="The cat sat on the warm mat."),
        Document(id="a2", content="The cat sat on the warm mat!"),
        Document(id="a3", content="On the warm mat, the cat sat."),
        Document(id="b", content="A cat chased a mouse across the kitchen."),
    ])
    plain = [d.id for d in s.similarity_search("cat on a mat", k=2)]
    assert set(plain) <= {"a", "a2", "a3"}  # near duplicates crowd the top
    mmr = [d.id for d in s.mmr_search("cat on a mat", k=2, fetch_k=4, lambda_mult=0.3)]
    assert mmr[0] in {"a", "a2", "a3"} and mmr[1] == "b"
    assert [d.id for d in s.as_retriever("mmr", k=2, fetch_k=4, lambda_mult=0.3).invoke("cat on a mat")] == mmr


def test_retrievers_are_runnables_with_k_filter_threshold(store):
    for kind in ("hybrid", "dense", "bm25", "mmr"):
        r = store.as_retriever(kind, k=2)
        assert isinstance(r, Retriever)
        docs = r.invoke("Which pets purr or bark?")
        assert 1 <= len(docs) <= 2 and all(isinstance(d, Document) and d.score is not None for d in docs)
        assert len(r.invoke("Which pets purr or bark?", k=1)) == 1
    chain = store.as_retriever(k=3) | (lambda docs: [d.id for d in docs])
    assert chain.invoke("kitten")[0] == "cat-2"
    dense = store.as_retriever("dense", k=10, score_threshold=0.5)
    docs = dense.invoke("Cats purr when they are content and relaxed.")
    assert docs and all(d.score >= 0.5 for d in docs)
    assert len(docs) < 10
    with pytest.raises(TypeError, match="Unknown retriever option"):
        store.as_retriever().invoke("x", top_k=3)
    with pytest.raises(ValueError, match="unknown operator"):
        store.as_retriever(filter={"year": {"$between": [1, 2]}})


async def test_async_retrieval(store):
    r = store.as_retriever(k=1)
    docs = await r.ainvoke("Mars rovers drilling rocks")
    assert docs[0].id == "space-2"
    many = await r.abatch(["kitten", "telescope"])
    assert [d[0].id for d in many] == ["cat-2", "space-1"]


def test_reopen_sees_the_same_data(make_store):
    if make_store.kind == "memory":
        pytest.skip("an in-memory store does not outlive its process")
    s = make_store()
    s.upsert(corpus_docs())  # embedded here: the default path
    again = make_store(s.collection_name)
    assert again.count() == len(CORPUS)
    assert again.as_retriever("bm25", k=1).invoke("XJ-9000 hinge")[0].id == "part-1"
    assert again.as_retriever(k=1).invoke("replacement part for the hinge")[0].id == "part-1"


def test_bm25_rebuilt_when_sidecar_lost(make_store, corpus_vectors, tmp_path):
    if make_store.kind == "memory":
        pytest.skip("an in-memory store has no sidecar file")
    s = make_store()
    s.upsert(corpus_docs(), embeddings=corpus_vectors)
    from plait.retrievers.chroma import ChromaStore

    fresh = ChromaStore(s.collection_name, client=s.client, embeddings=s.embeddings,
                        sidecar=tmp_path / "new-sidecar.sqlite")
    assert fresh.bm25 is not None and fresh.bm25.count() == 0
    assert fresh.as_retriever("bm25", k=1).invoke("XJ-9000")[0].id == "part-1"
    assert fresh.bm25.count() == len(CORPUS)


def test_clear_ignores_only_a_missing_collection(make_store, corpus_vectors):
    s = make_store()
    s.clear()  # never created: nothing to delete, no error
    s.upsert(corpus_docs(), embeddings=corpus_vectors)
    s.clear()
    assert s.count() == 0 and s.lexical_search("cats", k=3) == []
    s.clear()


def test_writes_go_in_batches_of_the_size_chroma_takes(make_store, corpus_vectors):
    s = make_store()
    assert s._max_batch() == s.client.get_max_batch_size() > 0
    s._batch = 3  # as if Chroma took 3 records per write
    s.upsert(corpus_docs(), embeddings=corpus_vectors)
    assert s.count() == len(CORPUS) and s.delete([i for i, _, _ in CORPUS[:7]]) == 7
    assert s.count() == len(CORPUS) - 7
