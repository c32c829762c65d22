"""BM25 on the store's lexical index (stemming, stopwords, sync, persistence across processes) and hybrid fusion."""

from __future__ import annotations

import pytest

from plait.messages import Document
from plait.retrievers.base import Hit, Retriever, document_key, matches, to_chroma_where
from plait.retrievers.bm25 import BM25Retriever
from plait.retrievers.fusion import first_documents, fuse, fuse_documents
from plait.retrievers.hybrid import HybridRetriever
from plait.retrievers.lexical import LexicalIndex
from plait.retrievers.lexical_engine import analyzer


def test_stemming_and_stopwords():
    index = LexicalIndex()
    tokens = analyzer().analyze("The runners are running quickly")
    assert tokens == ["runner", "run", "quick"]  # "the", "are" are stopwords; the rest stemmed
    index.upsert(["a", "b"], ["She runs every morning.", "The cat is on the mat."])
    assert [d.id for d in index.search("running")] == ["a"]
    assert index.search("the is on") == []  # stopwords only: nothing to match
    assert index.search("zebra") == []


def test_upsert_replace_delete_and_filter():
    index = LexicalIndex()
    index.upsert(["1", "2", "3"], ["red apples", "green apples", "red cars"],
                 [{"kind": "fruit"}, {"kind": "fruit"}, {"kind": "car"}])
    hits = index.search("red apples", k=3)
    assert hits[0].id == "1" and hits[0].score > hits[1].score > 0
    assert [d.id for d in index.search("red", filter={"kind": "car"})] == ["3"]
    index.upsert(["1"], ["yellow bananas"], [{"kind": "fruit"}])
    assert "1" not in [d.id for d in index.search("red apples", k=3)]
    index.delete(["3"])
    assert index.count() == 2 and [d.id for d in index.search("red", k=3)] == []
    r = BM25Retriever(index, k=1, score_threshold=0.0)
    assert r.invoke("bananas")[0].content == "yellow bananas"


def test_persisted_and_seen_by_another_instance(tmp_path):
    path = tmp_path / "side.lexical"
    a = LexicalIndex(path)
    a.upsert(["x"], ["quantum entanglement"])
    b = LexicalIndex(path)  # e.g. a server process reading what an ingest process wrote
    assert [d.id for d in b.search("entangled")] == ["x"]
    a.upsert(["y"], ["classical mechanics"])
    a.delete(["x"])
    assert [d.id for d in b.search("mechanics entanglement")] == ["y"]  # b sees a's commits at its next query


def test_filter_language():
    meta = {"topic": "cats", "year": 2020}
    assert matches(meta, {"topic": "cats"})
    assert matches(meta, {"year": {"$gte": 2020}, "topic": {"$in": ["cats", "dogs"]}})
    assert not matches(meta, {"$or": [{"year": {"$lt": 2000}}, {"topic": "dogs"}]})
    assert matches(meta, {"missing": {"$ne": 1}}) and not matches(meta, {"missing": {"$gt": 1}})
    assert not matches(meta, {"topic": {"$gt": 3}})  # type mismatch is no match, not an error
    assert to_chroma_where({"a": 1, "b": {"$lt": 2}}) == {"$and": [{"a": 1}, {"b": {"$lt": 2}}]}
    assert to_chroma_where({"$or": [{"a": 1}]}) == {"a": 1}
    with pytest.raises(ValueError, match="one operator"):
        to_chroma_where({"a": {"$gt": 1, "$lt": 3}})


def _docs(*pairs):
    return [Document(id=i, content=i, score=s) for i, s in pairs]


def test_convex_fusion_math():
    dense = _docs(("a", 0.9), ("b", 0.7), ("c", 0.5))
    lexical = _docs(("c", 12.0), ("d", 6.0), ("a", 2.0))
    fused = fuse_documents([dense, lexical], weights=[0.5, 0.5], normalisation="minmax")
    scores = {d.id: d.score for d in fused}
    # min-max per list: dense a=1, b=0.5, c=0; lexical c=1, d=0.4, a=0
    assert scores == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.5, "d": 0.2})
    assert [d.id for d in fused] == ["a", "c", "b", "d"]  # ties broken by id, stable
    assert [d.id for d in fuse_documents([dense, lexical], weights=[1.0, 0.0])][:3] == ["a", "b", "c"]
    # dbsf: mean -+ 3 std -> 0..1; dense mean 0.7, std 0.1633 -> a = (0.9 - 0.2101) / 0.9798
    dbsf = {d.id: d.score for d in fuse_documents([dense, lexical], weights=[0.5, 0.0], normalisation="dbsf")}
    assert dbsf["a"] == pytest.approx(0.5 * (0.9 - (0.7 - 3 * 0.163299)) / (6 * 0.163299), rel=1e-4)
    assert dbsf["d"] == 0.0


def test_rrf_fusion_math():
    fused = fuse_documents([_docs(("a", 1), ("b", 1)), _docs(("b", 1), ("c", 1))], fusion="rrf", rrf_k=60)
    assert [d.id for d in fused] == ["b", "a", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)


class _Fixed(Retriever):  # a Retriever returning a fixed list: it implements hits() only
    def __init__(self, docs):
        super().__init__(k=10)
        self.docs = docs

    def hits(self, query, *, k, filter=None):
        return [Hit.of(d) for d in self.docs if matches(d.metadata, filter)][:k]


def test_hybrid_retriever_fuses_both_sides():
    dense = _Fixed(_docs(("para", 0.8), ("both", 0.75), ("x", 0.1)))
    lexical = _Fixed(_docs(("code", 9.0), ("both", 8.0), ("y", 1.0)))
    for fusion in ("convex", "rrf"):
        r = HybridRetriever(dense, lexical, k=3, fusion=fusion)
        ids = [d.id for d in r.invoke("q")]
        assert ids[0] == "both" and set(ids) == {"both", "para", "code"}
    with pytest.raises(ValueError, match="fusion"):
        HybridRetriever(dense, lexical, fusion="max")


@pytest.mark.integration
def test_hybrid_finds_what_each_side_alone_misses(embeddings):
    from plait.retrievers.chroma import ChromaStore
    from tests.retrievers.conftest import corpus_docs, unique

    store = ChromaStore.in_memory(unique("hyb"), embeddings=embeddings)
    store.upsert(corpus_docs())
    hybrid = store.as_retriever(k=2)
    assert hybrid.invoke("XJ-9000")[0].id == "part-1"  # exact code: BM25's strength
    assert hybrid.invoke("feline making a happy rumbling sound")[0].id == "cat-1"  # paraphrase: dense's
    assert store.as_retriever("bm25").invoke("feline making a happy rumbling sound") == []
    store.clear()


def _chunk(cid, score, source, chunk, **extra):
    return Document(id=cid, content=cid, score=score,
                    metadata={"source": source, "chunk": chunk, "start": 0, "end": 1, **extra})


def test_document_key_groups_chunks_a_splitter_made():
    a0 = _chunk("a0", 1, "f.jsonl", 0, line=1, section="Intro")
    a1 = _chunk("a1", 1, "f.jsonl", 1, line=1, section="Methods")
    b0 = _chunk("b0", 1, "f.jsonl", 2, line=2)
    assert document_key("a0", a0.metadata) == document_key("a1", a1.metadata) != document_key("b0", b0.metadata)
    # no "chunk": not split, its own document, even with the same source
    assert document_key("x", {"source": "f"}) != document_key("y", {"source": "f"})
    assert document_key("z", {"chunk": 0, "tags": ["a"]}) == document_key("w", {"chunk": 1, "tags": ["a"]})


def test_document_aware_fusion_credits_a_document_once_per_side():
    # Document A: its dense hit is chunk a0, its BM25 hit chunk a1. Document B has one chunk on both.
    dense = [_chunk("a0", 0.9, "A", 0), _chunk("b0", 0.8, "B", 0), _chunk("c0", 0.1, "C", 0)]
    lexical = [_chunk("a1", 10.0, "A", 1), _chunk("b0", 8.0, "B", 0), _chunk("d0", 1.0, "D", 0)]
    chunkwise = dict(fuse([dense, lexical]))
    assert max(chunkwise, key=chunkwise.__getitem__) == "b0"  # a0 and a1 each get one side
    by_doc = fuse([dense, lexical], by_document=True)
    scores = dict(by_doc)
    # min-max over documents, per side: dense A=1, B=0.875, C=0; BM25 A=1, B=7/9, D=0
    assert [i for i, _ in by_doc][:2] == ["a0", "b0"]  # A's best chunk (ties: smaller id) leads A
    assert scores["a0"] == pytest.approx(1.0)
    assert scores["a1"] == pytest.approx(0.5) and scores["a1"] <= scores["a0"]  # its own score
    assert scores["b0"] == pytest.approx(0.5 * 0.875 + 0.5 * 7 / 9)
    rrf = dict(fuse([dense, lexical], fusion="rrf", by_document=True))
    assert rrf["a0"] == pytest.approx(2 / 61) and rrf["b0"] == pytest.approx(2 / 62)


def test_document_aware_fusion_is_chunk_fusion_on_unsplit_documents():
    dense = _docs(("a", 0.9), ("b", 0.7), ("c", 0.5))
    lexical = _docs(("c", 12.0), ("d", 6.0), ("a", 2.0))
    for fusion in ("convex", "rrf"):
        for norm in ("minmax", "dbsf"):
            assert fuse([dense, lexical], fusion=fusion, normalisation=norm, by_document=True) == \
                fuse([dense, lexical], fusion=fusion, normalisation=norm)


@pytest.mark.integration
def test_hybrid_returns_the_stored_chunks_whole(embeddings):
    from plait.retrievers.chroma import ChromaStore
    from tests.retrievers.conftest import corpus_docs, unique

    store = ChromaStore.in_memory(unique("hyb"), embeddings=embeddings)
    docs = corpus_docs()
    docs[0].metadata["tags"] = ["pet", "sound"]  # Chroma keeps it as JSON text: every retriever agrees
    store.upsert(docs)
    stored = {d.id: d for d in store.get()}
    for kind in ("hybrid", "dense", "bm25"):
        for by_document in (False, True):
            options = {"by_document": by_document} if kind == "hybrid" else {}
            hits = store.as_retriever(kind, k=10, **options).invoke("cats purring")
            assert hits and all(h.score is not None for h in hits)
            for h in hits:
                assert (h.content, h.metadata) == (stored[h.id].content, stored[h.id].metadata)
    assert store.as_retriever(k=3, filter={"topic": "dogs"}).invoke("cats") == \
        [d for d in store.as_retriever(k=3, filter={"topic": "dogs"}).invoke("cats") if d.metadata["topic"] == "dogs"]
    store.clear()


@pytest.mark.integration
def test_candidates_without_a_bm25_twin_come_from_chroma(embeddings):
    from plait.retrievers.chroma import ChromaStore
    from plait.retrievers.dense import DenseRetriever
    from tests.retrievers.conftest import corpus_docs, unique

    store = ChromaStore.in_memory(unique("nobm"), embeddings=embeddings, bm25=False)
    store.upsert(corpus_docs())
    hits = store.similarity_hits("a purring cat", k=3)
    assert hits[0].id == "cat-1" and hits[0].metadata["topic"] == "cats" and hits[0].document is None
    assert [d.id for d in store.documents(["dog-1", "nope", "cat-1"])] == ["dog-1", "cat-1"]
    lexical = _Fixed(_docs(("cat-1", 5.0), ("space-1", 1.0)))
    fused = HybridRetriever(DenseRetriever(store), lexical, k=10).invoke("a purring cat")
    assert fused[0].id == "cat-1" and "space-1" in {d.id for d in fused}
    stored = {d.id: d.content for d in corpus_docs()}
    loaded = [d for d in fused if d.id not in ("cat-1", "space-1")]  # found by dense only: loaded from Chroma
    assert loaded and all(d.content == stored[d.id] for d in loaded)
    store.clear()


def test_join_chunks_gives_the_document_back():
    from plait.retrievers.lexical import join_chunks
    from plait.retrievers.splitters import RecursiveCharacterSplitter

    text = ("Vitamin D is made in the skin and helps the body absorb calcium; bones need calcium "
            "to stay dense and muscles need it to contract.\n\nDeficiency is common in winter.")
    chunks = RecursiveCharacterSplitter(chunk_size=40, chunk_overlap=15).split_documents([Document(content=text)])
    assert len(chunks) >= 3 and sum(len(c.content) for c in chunks) > len(text)  # they overlap
    joined = join_chunks([c.content for c in chunks], [c.metadata for c in chunks])
    assert joined.split() == text.split()
    # without offsets: joined as they are
    assert join_chunks(["a b", "c"], [{}, {}]) == "a b c"


def _split_doc(index, level_docs):
    ids, texts, metas = [], [], []
    for source, parts in level_docs.items():
        start = 0
        for n, part in enumerate(parts):
            ids.append(f"{source}{n}")
            texts.append(part)
            meta = {"source": source}
            if len(parts) > 1:
                meta |= {"chunk": n, "start": start, "end": start + len(part)}
            metas.append(meta)
            start += len(part) + 1
    index.upsert(ids, texts, metas)


DOCS = {
    "a": ["Vitamin D levels were measured in adults.", "Bone density improved over two years."],
    "b": ["Vitamin D supplements and vitamin D levels in vitamin studies."],
    "c": ["Cats purr when they are content."],
    "d": ["Dogs bark at strangers at night."],
}


def test_bm25_scores_whole_documents_and_returns_their_best_chunk():
    chunks = LexicalIndex(window=1)
    _split_doc(chunks, DOCS)
    by_chunk = [h.id for h in chunks.hits("vitamin bone density", k=5)]
    assert {"a0", "a1"} <= set(by_chunk)  # chunk level: each chunk of document a on its own
    docs = LexicalIndex()  # window=4: a document of up to 4 chunks is one passage
    _split_doc(docs, DOCS)
    hits = docs.hits("vitamin bone density", k=5)
    assert [h.id for h in hits] == ["a1", "b0"]  # one hit per document; a's best chunk carries it
    # document a's score is that of its joined text, scored as one document
    whole = LexicalIndex(window=1)
    whole.upsert(["a", "b", "c", "d"], [" ".join(p) for p in DOCS.values()])
    assert hits[0].score == pytest.approx(whole.hits("vitamin bone density", k=1)[0].score)
    # a filter on a chunk's fields: the document counts through its chunks that pass
    [only] = docs.hits("vitamin bone density", k=5, filter={"chunk": 0})
    assert only.id == "a0" and only.score == pytest.approx(hits[0].score)
    assert [d.id for d in BM25Retriever(docs, k=1).invoke("bone")] == ["a1"]
    docs.delete(["a1"])  # kept in sync: document a is now its first chunk alone
    assert [h.id for h in docs.hits("bone density", k=5)] == []
    with pytest.raises(ValueError, match="window"):
        LexicalIndex(window=0)


def test_a_long_document_gives_several_passages():
    index = LexicalIndex(window=4)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    _split_doc(index, {"x": [f"{w} filler text here" for w in words], "y": ["unrelated words only"]})
    assert [h.id for h in index.hits("zeta", k=5)] == ["x5"]  # passage x4..x7, its best chunk
    assert [h.id for h in index.hits("beta", k=5)] == ["x1"]  # passage x0..x3
    assert sorted(h.id for h in index.hits("beta zeta", k=5)) == ["x1", "x5"]  # one file, two passages


def test_fusion_by_document_keeps_chunk_order_within_one_document():
    # One document only: per-document normalisation has no spread, chunk scores must still rank its chunks.
    dense = [_chunk("x0", 0.9, "X", 0), _chunk("x1", 0.7, "X", 1), _chunk("x2", 0.5, "X", 2)]
    lexical = [_chunk("x2", 5.0, "X", 2)]
    fused = fuse([dense, lexical], by_document=True)
    assert [i for i, _ in fused] == ["x0", "x2", "x1"]
    assert [s for _, s in fused] == pytest.approx([1.0, 0.5, 0.25])


def test_first_documents_cuts_at_the_nth_document():
    hits = [_chunk("a0", 0.9, "A", 0), _chunk("a1", 0.8, "A", 1), _chunk("b0", 0.7, "B", 0),
            _chunk("a2", 0.6, "A", 2), _chunk("c0", 0.5, "C", 0), _chunk("b1", 0.4, "B", 1)]
    assert [h.id for h in first_documents(hits, 2)] == ["a0", "a1", "b0", "a2"]
    assert [h.id for h in first_documents(hits, 5)] == [h.id for h in hits]


@pytest.mark.integration
def test_hybrid_over_one_long_split_file_ranks_its_chunks(embeddings):
    # A store holding a single long document: per-document fusion and BM25 passages must still
    # pick the right chunk out of it (one document means no spread between documents).
    from plait.retrievers.chroma import ChromaStore
    from plait.retrievers.splitters import RecursiveCharacterSplitter
    from tests.retrievers.conftest import CORPUS, unique

    text = "\n\n".join(t for _, t, _ in CORPUS)
    chunks = RecursiveCharacterSplitter(chunk_size=80, chunk_overlap=0).split_documents(
        [Document(content=text, metadata={"source": "notes.txt"})])
    assert len(chunks) == len(CORPUS)
    for c in chunks:
        c.id = f"n{c.metadata['chunk']}"
    store = ChromaStore.in_memory(unique("one"), embeddings=embeddings)
    store.upsert(chunks)
    hybrid = store.as_retriever(k=3)
    assert hybrid.invoke("XJ-9000 hinge")[0].content.startswith("Replacement part XJ-9000")
    assert hybrid.invoke("feline making a happy rumbling sound")[0].content.startswith("Cats purr")
    assert hybrid.invoke("rovers looking for water on Mars")[0].content.startswith("Mars rovers")
    assert len({d.id for d in store.as_retriever("bm25", k=10).invoke("cats dogs telescope bread")}) == 3
    store.clear()
