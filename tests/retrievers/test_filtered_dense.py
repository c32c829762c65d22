"""Filtered vector queries (plait/retrievers/chroma_search.py): the over-fetch and the id-restricted
query give the same chunks, and no way ever returns a chunk that fails the filter."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plait.messages import Document
from plait.retrievers.base import matches
from plait.retrievers.chroma import ChromaStore
from plait.retrievers.chroma_search import FilterPlan

OVERFETCH = FilterPlan(scan_cost=1.0, neighbour_cost=1e-9, max_neighbours=10**9)  # always over-fetch
BY_IDS = FilterPlan(max_neighbours=0)  # never
DIM = 16
WORDS = "alpha beta gamma delta river stone cloud light metal glass paper seed wind salt".split()


class HashEmbeddings:
    """A deterministic unit vector per text (no model): enough to compare query plans."""

    max_tokens = 256

    def _one(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, DIM), np.float32)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._one(text).tolist()

    def warm_up(self) -> None:
        pass


def make_store(n_docs: int = 300, path: Path | None = None) -> ChromaStore:
    """Two chunks per document, five topics, years 2000-2011 (what a splitter's metadata looks like);
    in memory, or embedded under ``path``."""
    rng = np.random.default_rng(0)
    name = f"filtered-{uuid.uuid4().hex[:10]}"
    store = ChromaStore.in_memory(name, embeddings=HashEmbeddings()) if path is None else \
        ChromaStore(name, path=path, embeddings=HashEmbeddings())
    docs = []
    for d in range(n_docs):
        for c in range(2):
            text = " ".join(rng.choice(WORDS, 6))
            docs.append(Document(id=f"d{d}-c{c}", content=f"{text} {d} {c}", metadata={
                "source": f"doc{d}.txt", "chunk": c, "start": c * 100, "topic": f"t{d % 5}", "year": 2000 + d % 12}))
    store.upsert(docs)
    return store


def dense(store: ChromaStore, plan: FilterPlan, query: str, k: int, where: dict[str, Any]) -> list[Document]:
    store.filter_plan = plan
    return store.similarity_search(query, k=k, filter=where)


FILTERS = [{"topic": "t1"}, {"topic": {"$in": ["t0", "t3"]}}, {"year": {"$gte": 2006}},
           {"$and": [{"topic": "t2"}, {"year": {"$lt": 2010}}]}]


def test_the_plan_over_fetches_only_where_measured_costs_say_it_is_cheaper() -> None:
    plan = FilterPlan(scan_cost=0.0003, neighbour_cost=0.011, z=4.0, max_neighbours=15_000)
    # 10% of 300,000 passing, k=200: (200 + 4 * sqrt(200)) / 0.1 = 2,566 neighbours (28 ms) cost less
    # than the ids query (90 ms)
    assert plan.neighbours(200, 30_000, 300_000) == 2566
    assert plan.neighbours(200, 3_000, 300_000) is None  # 1%: 25,657 neighbours
    assert plan.neighbours(4, 30_000, 300_000) == 120  # few asked: relatively more to spare
    assert plan.neighbours(200, 100_000, 1_000_000) == 2566  # the bigger the store, the likelier
    assert plan.neighbours(200, 10_000, 1_000_000) is None  # 1% of 1,000,000: over the cap
    assert plan.neighbours(20, 300, 600) is None  # a small store: ids
    assert plan.neighbours(200, 0, 300_000) is None
    assert OVERFETCH.neighbours(20, 60, 600) == 379


@pytest.mark.parametrize("where", FILTERS, ids=[str(f) for f in FILTERS])
def test_overfetch_and_ids_give_the_same_nearest_chunks(where: dict[str, Any]) -> None:
    store = make_store()
    for q in ("alpha river", "glass seed wind", "metal", "cloud light 42", "salt stone paper"):
        by_ids = dense(store, BY_IDS, q, 10, where)
        over = dense(store, OVERFETCH, q, 10, where)
        assert len(by_ids) == 10 and all(matches(d.metadata, where) for d in by_ids + over)
        assert [d.id for d in over] == [d.id for d in by_ids]
        assert [d.content for d in over] == [d.content for d in by_ids]
        assert [d.metadata for d in over] == [d.metadata for d in by_ids]
        assert [d.score for d in over] == pytest.approx([d.score for d in by_ids], abs=1e-5)
    assert store.dense_plans["overfetch"] == 5 and store.dense_plans["ids"] == 5  # each way was taken


def test_overfetched_vectors_are_the_stored_ones() -> None:
    store = make_store(100)
    where = {"topic": "t4"}
    store.filter_plan = BY_IDS
    docs_ids, vecs_ids = store.search_with_vectors(store.embeddings.embed_query("delta"), 8, filter=where)
    store.filter_plan = OVERFETCH
    docs_over, vecs_over = store.search_with_vectors(store.embeddings.embed_query("delta"), 8, filter=where)
    assert [d.id for d in docs_over] == [d.id for d in docs_ids]
    np.testing.assert_allclose(np.asarray(vecs_over), np.asarray(vecs_ids), atol=1e-6)
    assert store.dense_plans["overfetch"] == 1
    mmr = store.mmr_search("delta", k=4, fetch_k=12, filter=where)  # MMR over-fetches too, with vectors
    assert len(mmr) == 4 and all(d.metadata["topic"] == "t4" for d in mmr)


def test_too_few_passing_neighbours_fall_back_to_the_id_query() -> None:
    """The passing chunks lie opposite the query: the over-fetched neighbours hold none of them."""
    store = ChromaStore.in_memory(f"filtered-{uuid.uuid4().hex[:10]}", embeddings=HashEmbeddings())
    rng = np.random.default_rng(1)
    axis = np.zeros(DIM, np.float32)
    axis[0] = 1.0
    vecs, docs = [], []
    for i in range(200):
        far = i % 10 == 0  # 10% pass
        v = (-axis if far else axis) * 3 + rng.standard_normal(DIM).astype(np.float32) * 0.3
        vecs.append(v / np.linalg.norm(v))
        docs.append(Document(id=f"c{i}", content=f"chunk {i}", metadata={"side": "far" if far else "near"}))
    store.upsert(docs, embeddings=np.stack(vecs))
    store.filter_plan = FilterPlan(scan_cost=1.0, neighbour_cost=1e-9, z=0.0, max_neighbours=10**9)
    got = store.similarity_search_by_vector(axis, k=5, filter={"side": "far"})
    assert store.dense_plans["overfetch-short"] == 1 and store.dense_plans["ids"] == 1
    store.filter_plan = BY_IDS
    expected = store.similarity_search_by_vector(axis, k=5, filter={"side": "far"})
    assert [d.id for d in got] == [d.id for d in expected] and len(got) == 5
    assert all(d.metadata["side"] == "far" for d in got)


@pytest.mark.parametrize("plan", [OVERFETCH, BY_IDS, FilterPlan()], ids=["overfetch", "ids", "default"])
def test_a_filtered_hybrid_query_never_returns_a_chunk_that_fails_the_filter(plan: FilterPlan) -> None:
    store = make_store()
    store.filter_plan = plan
    for where in FILTERS:
        retriever = store.as_retriever("hybrid", k=10, filter=where)
        for q in ("alpha river 12", "glass seed", "metal 7 1"):
            got = retriever.invoke(q)
            assert len(got) == 10
            assert all(matches(d.metadata, where) for d in got), [d.metadata for d in got]


def test_the_hybrid_results_are_the_same_either_way() -> None:
    store = make_store()
    for where in FILTERS:
        for q in ("alpha river 12", "glass seed", "metal 7 1"):
            store.filter_plan = BY_IDS
            expected = [d.id for d in store.as_retriever("hybrid", k=10, filter=where).invoke(q)]
            store.filter_plan = OVERFETCH
            assert [d.id for d in store.as_retriever("hybrid", k=10, filter=where).invoke(q)] == expected
    assert store.dense_plans["overfetch"] >= 12 and store.dense_plans["ids"] >= 12


def test_filters_the_engine_cannot_answer_use_chromas_where() -> None:
    store = make_store(50)
    store.filter_plan = OVERFETCH
    where = {"topic": {"$ne": "t1"}}
    got = store.similarity_search("alpha", k=10, filter=where)
    assert len(got) == 10 and all(d.metadata["topic"] != "t1" for d in got)
    assert store.dense_plans["where"] == 1 and not store.dense_plans["overfetch"]
    assert store.similarity_search("alpha", k=5, filter={"topic": "none"}) == []
    assert store.dense_plans["none"] == 1


def test_passing_chunks_know_their_count_and_the_collection_size() -> None:
    store = make_store(50)
    lexical = store.lexical_index()
    found = lexical.passing({"topic": "t1"})  # type: ignore[attr-defined]
    assert (found.count, found.total) == (20, 100) and store.count() == 100
    expected = {f"d{d}-c{c}" for d in range(1, 50, 5) for c in (0, 1)}
    assert found.members(["d1-c0", "d2-c0", "d6-c1", "nope"]) == {"d1-c0", "d6-c1"}  # asked once: by a query
    assert set(found.ids()) == expected
    assert lexical.passing({"topic": "t1"}) is found  # no commit since: the same
    store.upsert([Document(id="new", content="alpha", metadata={"topic": "t1"})])
    again = lexical.passing({"topic": "t1"})  # type: ignore[attr-defined]
    assert (again.count, again.total) == (21, 101) and "new" in again.ids()


def test_candidates_are_checked_in_slices_and_too_many_ids_fall_back_to_where(monkeypatch: Any) -> None:
    """tantivy lists at most 65,000 terms per aggregation: more candidates go in slices, and a filter
    passing more chunks than that cannot give the id list (Chroma's ``where`` answers)."""
    monkeypatch.setattr("plait.retrievers.lexical_engine.BUCKETS", 9)  # 2 passages of 4 chunks a slice
    store = make_store(60)
    found = store.lexical_index().passing({"topic": {"$in": ["t1", "t2"]}})  # type: ignore[attr-defined]
    candidates = [f"d{d}-c{c}" for d in range(60) for c in (0, 1)]
    assert found.members(candidates) == {i for i in candidates if int(i[1:].split("-")[0]) % 5 in (1, 2)}
    assert found.ids() is None  # 48 passing, more than 9
    store.filter_plan = BY_IDS
    by_where = store.similarity_search("alpha", k=10, filter={"topic": {"$in": ["t1", "t2"]}})
    assert store.dense_plans["where"] == 1 and len(by_where) == 10
    store.filter_plan = OVERFETCH
    over = store.similarity_search("alpha", k=10, filter={"topic": {"$in": ["t1", "t2"]}})
    assert store.dense_plans["overfetch"] == 1
    assert [d.id for d in over] == [d.id for d in by_where]


def test_an_id_chroma_lacks_falls_back_to_where(tmp_path: Path) -> None:
    """Another process's delete half seen (Chroma's done, the lexical index's not yet): Chroma refuses
    an id restriction naming a chunk it lacks, so the ``where`` query answers."""
    store = make_store(30, tmp_path / "chroma")
    store.filter_plan = BY_IDS
    store.lexical_index()  # its first-use check against Chroma's count is done
    store.collection.delete(ids=["d1-c0"])  # behind the store's back: the lexical index still has it
    got = store.similarity_search("alpha", k=5, filter={"topic": "t1"})
    assert len(got) == 5 and all(d.metadata["topic"] == "t1" and d.id != "d1-c0" for d in got)
    assert store.dense_plans["where-missing-id"] == 1
