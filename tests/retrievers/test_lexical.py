"""LexicalIndex (tantivy): writes seen at the next query, updates, deletes, filters, passages,
persistence, other OS processes reading and writing the same folder, and O(changed) updates."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tantivy")

from plait.retrievers.base import matches  # noqa: E402
from plait.retrievers.lexical import LexicalIndex, partition  # noqa: E402


@pytest.fixture(params=["memory", "disk"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> LexicalIndex:
    return LexicalIndex(None if request.param == "memory" else tmp_path / "lex")


def chunk_meta(source: str, chunk: int, start: int, end: int, **extra: Any) -> dict[str, Any]:
    return {"source": source, "chunk": chunk, "start": start, "end": end, **extra}


def ids_of(hits: list[Any]) -> list[str]:
    return [h.id for h in hits]


def test_a_write_is_seen_at_the_next_query(index: LexicalIndex) -> None:
    assert index.hits("quokka", 5) == []
    index.upsert(["q1"], ["The quokka is a small marsupial."], [{"source": "a.txt"}])
    assert ids_of(index.hits("quokkas", 5)) == ["q1"]
    index.upsert(["q2"], ["Another quokka photo."], [{"source": "b.txt"}])
    assert set(ids_of(index.hits("quokka", 5))) == {"q1", "q2"}
    assert index.count() == 2 and index.ids() == ["q1", "q2"]


def test_search_returns_documents_with_scores_best_first(index: LexicalIndex) -> None:
    index.upsert(["a", "b", "c"], ["zebra zebra herd", "one zebra among many grazing animals", "no match here"])
    docs = index.search("zebra", k=5)
    assert [d.id for d in docs] == ["a", "b"]
    assert docs[0].content == "zebra zebra herd" and docs[0].score is not None and docs[1].score is not None
    assert docs[0].score > docs[1].score > 0
    assert index.search("the of and", k=5) == []  # stopwords only: no terms, no hits


def test_an_update_replaces_the_old_text(index: LexicalIndex) -> None:
    index.upsert(["x"], ["telomerase in stem cells"], [{"source": "x.txt", "v": 1}])
    index.upsert(["x"], ["quokkas on an island"], [{"source": "x.txt", "v": 2}])
    assert index.hits("telomerase", 5) == []
    assert ids_of(index.hits("quokka", 5)) == ["x"]
    assert index.count() == 1 and index.metadata(["x"]) == {"x": {"source": "x.txt", "v": 2}}
    assert index.get(["x"])[0].content == "quokkas on an island"


def test_delete(index: LexicalIndex) -> None:
    index.upsert(["a", "b"], ["zebra one", "zebra two"])
    index.delete(["a", "not-there"])
    assert ids_of(index.hits("zebra", 5)) == ["b"]
    assert index.count() == 1 and index.get(["a", "b"])[0].id == "b" and len(index.get(["a"])) == 0
    index.clear()
    assert index.count() == 0 and index.hits("zebra", 5) == []


CORPUS = [  # every text holds "common", so a query for it matches everything and the filter decides
    ("cat-1", "common cats purr", {"topic": "cats", "year": 2019, "score": 0.5, "ok": True}),
    ("cat-2", "common kittens sleep", {"topic": "cats", "year": 2021, "score": 1.5, "ok": False}),
    ("dog-1", "common dogs bark", {"topic": "dogs", "year": 2020, "score": 2.5, "ok": True}),
    ("dog-2", "common puppies train", {"topic": "dogs", "year": 2023}),
    ("space-1", "common telescopes observe", {"topic": "space", "year": 2022, "score": -1.0, "ok": True}),
    ("doc-0", "common first part", chunk_meta("long.md", 0, 0, 17, topic="long")),
    ("doc-1", "common second part", chunk_meta("long.md", 1, 18, 36, topic="long")),
]

FILTERS = [
    {"topic": "cats"},
    {"topic": {"$eq": "dogs"}},
    {"year": 2020},
    {"topic": {"$in": ["cats", "space"]}},
    {"topic": {"$nin": ["cats", "space"]}},
    {"topic": {"$ne": "dogs"}},
    {"year": {"$gte": 2021}},
    {"year": {"$lt": 2021}},
    {"score": {"$gt": 1.0}},
    {"score": {"$lte": 0.5}},
    {"ok": True},
    {"$and": [{"topic": "cats"}, {"year": {"$gt": 2019}}]},
    {"topic": "dogs", "year": {"$lte": 2020}},
    {"$or": [{"topic": "space"}, {"year": 2019}]},
    {"$or": [{"$and": [{"topic": "dogs"}, {"year": 2023}]}, {"ok": False}]},
    {"chunk": 1},
    {"chunk": {"$ne": 0}},
    {"$and": [{"topic": "long"}, {"start": {"$gte": 10}}]},
    {"topic": {"$gt": "d"}},  # a string range: checked per chunk
    {"missing": "x"},
]


@pytest.mark.parametrize("where", FILTERS, ids=[json.dumps(f) for f in FILTERS])
def test_filters_match_the_reference_semantics(tmp_path: Path, where: dict[str, Any]) -> None:
    index = LexicalIndex(tmp_path / "lex", window=1)  # one hit per chunk: the expected set is plain
    index.upsert([c[0] for c in CORPUS], [c[1] for c in CORPUS], [c[2] for c in CORPUS])
    expected = {i for i, _, m in CORPUS if matches(m, where)}
    got = ids_of(index.hits("common", 50, where))
    assert len(got) == len(set(got))
    assert set(got) == expected


@pytest.mark.parametrize("where", FILTERS, ids=[json.dumps(f) for f in FILTERS])
def test_chunk_ids_of_a_filter_are_exact_or_none(tmp_path: Path, where: dict[str, Any]) -> None:
    index = LexicalIndex(tmp_path / "lex")  # passages of several chunks: every chunk of a match counts
    index.upsert([c[0] for c in CORPUS], [c[1] for c in CORPUS], [c[2] for c in CORPUS])
    got = index.chunk_ids(where)
    negated = any(op in json.dumps(where) for op in ("$ne", "$nin"))
    per_chunk = any(k in json.dumps(where) for k in ('"chunk"', '"start"')) or where == {"topic": {"$gt": "d"}}
    if negated or per_chunk:  # the engine alone cannot answer these: the caller filters another way
        assert got is None
    else:
        assert got is not None and sorted(got) == sorted(i for i, _, m in CORPUS if matches(m, where))
        assert index.chunk_ids(where) is got  # asked again with no write since: remembered
    index.delete(["cat-1"])
    if got is not None:
        assert "cat-1" not in (index.chunk_ids(where) or [])


def test_filter_on_a_passage_is_carried_by_a_chunk_that_passes(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")  # doc-0 and doc-1 form one passage
    index.upsert([c[0] for c in CORPUS], [c[1] for c in CORPUS], [c[2] for c in CORPUS])
    assert ids_of(index.hits("second part", 5)) == ["doc-1"]
    assert ids_of(index.hits("second part", 5, {"chunk": 0})) == ["doc-0"]  # the passage counts; its chunk 0 carries it
    assert index.hits("second part", 5, {"chunk": 7}) == []


def test_a_bad_filter_is_refused(index: LexicalIndex) -> None:
    index.upsert(["a"], ["zebra"])
    with pytest.raises(ValueError, match="operator"):
        index.hits("zebra", 5, {"year": {"$near": 3}})


def test_passages_find_terms_split_across_chunks_of_one_document(index: LexicalIndex) -> None:
    texts = ["Telomerase keeps chromosome ends long.", "In quokkas it was never measured."]
    metas = [chunk_meta("paper.txt", 0, 0, 38), chunk_meta("paper.txt", 1, 39, 72)]
    # each of these has one of the terms twice: chunk by chunk they beat either chunk of paper.txt
    others = [("o1", "Telomerase and telomerase were compared in several large studies.", {"source": "o1.txt"}),
              ("o2", "Quokkas and quokkas were compared in several large studies.", {"source": "o2.txt"})]
    index.upsert(["p0", "p1"] + [o[0] for o in others], texts + [o[1] for o in others],
                 metas + [o[2] for o in others])
    top = index.hits("telomerase in quokkas", 3)
    assert top[0].id in {"p0", "p1"}  # the document with both terms wins, though no chunk has both
    assert len([h for h in top if h.id in {"p0", "p1"}]) == 1  # one hit per passage
    # chunk by chunk, that document has no advantage
    chunks = LexicalIndex(window=1)
    chunks.upsert(["p0", "p1"] + [o[0] for o in others], texts + [o[1] for o in others],
                  metas + [o[2] for o in others])
    assert chunks.hits("telomerase in quokkas", 1)[0].id in {"o1", "o2"}
    # a chunk appended later joins the document's passage
    index.upsert(["p2"], ["Zebras were not studied."], [chunk_meta("paper.txt", 2, 73, 97)])
    assert index.hits("telomerase zebras quokkas", 1)[0].id in {"p0", "p1", "p2"}
    assert index.hits("zebras", 1)[0].id == "p2"  # the best chunk carries the passage


def test_a_chunk_that_moves_to_another_document_leaves_the_old_passage(index: LexicalIndex) -> None:
    index.upsert(["a0", "a1"], ["alpha words", "omega words"],
                 [chunk_meta("a.txt", 0, 0, 11), chunk_meta("a.txt", 1, 12, 23)])
    index.upsert(["a1"], ["omega words"], [chunk_meta("b.txt", 0, 0, 11)])
    assert ids_of(index.hits("alpha", 5)) == ["a0"] and ids_of(index.hits("omega", 5)) == ["a1"]
    assert index.metadata(["a1"])["a1"]["source"] == "b.txt" and index.count() == 2


def test_partition_is_near_equal_runs() -> None:
    assert [len(r) for r in partition(list(range(5)), 4)] == [2, 3]
    assert [len(r) for r in partition(list(range(9)), 4)] == [3, 3, 3]
    assert [len(r) for r in partition(list(range(4)), 4)] == [4]
    assert partition([], 4) == []


def test_persists_across_reopen_and_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "lex"
    first = LexicalIndex(path)
    first.upsert(["a0", "a1", "b"], ["alpha", "omega", "beta"],
                 [chunk_meta("a.txt", 0, 0, 5), chunk_meta("a.txt", 1, 6, 11), {"source": "b.txt"}])
    first.close()
    again = LexicalIndex(path)
    assert again.count() == 3 and again.ids() == ["a0", "a1", "b"]
    assert ids_of(again.hits("beta", 5)) == ["b"] and again.get(["a1"])[0].content == "omega"
    again.rebuild()
    assert again.count() == 3 and ids_of(again.hits("alpha omega", 5)) in (["a0"], ["a1"])


def test_a_folder_that_is_not_a_lexical_index_is_refused(tmp_path: Path) -> None:
    import tantivy

    sb = tantivy.SchemaBuilder()
    sb.add_text_field("x")
    tantivy.Index(sb.build(), path=str(tmp_path))
    with pytest.raises(ValueError, match="not a plait lexical index"):
        LexicalIndex(tmp_path).count()


CHILD = textwrap.dedent("""
    import json, sys
    from plait.retrievers.lexical import LexicalIndex
    index = LexicalIndex(sys.argv[1], lock_timeout=120)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "query":
            print(json.dumps([h.id for h in index.hits(arg, 10)]), flush=True)
        elif cmd == "write":  # write N chunks named PREFIX-i, one upsert each
            prefix, n = arg.split()
            for i in range(int(n)):
                index.upsert([f"{prefix}-{i}"], [f"shared {prefix} text number {i}"], [{"source": prefix}])
            print(json.dumps("done"), flush=True)
""")


def start_child(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def ask(proc: subprocess.Popen[str], line: str) -> Any:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=120) == 0


def test_another_process_sees_a_write_at_its_next_query(tmp_path: Path) -> None:
    path = tmp_path / "lex"
    writer = LexicalIndex(path)
    writer.upsert(["old"], ["an old quokka"])
    reader = start_child(path)
    try:
        assert ask(reader, "query quokka") == ["old"]  # its searcher is open on the first commit
        writer.upsert(["new"], ["a new zebra"])
        assert ask(reader, "query zebra") == ["new"]
        writer.delete(["old"])
        assert ask(reader, "query quokka") == []
    finally:
        stop(reader)


def test_writers_in_two_processes_both_land(tmp_path: Path) -> None:
    path = tmp_path / "lex"
    LexicalIndex(path).count()  # created once, so both children open it
    a, b = start_child(path), start_child(path)
    try:
        for proc, prefix in ((a, "left"), (b, "right")):
            assert proc.stdin is not None
            proc.stdin.write(f"write {prefix} 15\n")
            proc.stdin.flush()
        assert [json.loads(p.stdout.readline()) for p in (a, b) if p.stdout] == ["done", "done"]
    finally:
        stop(a)
        stop(b)
    index = LexicalIndex(path)
    assert index.count() == 30
    assert index.ids() == sorted([f"left-{i}" for i in range(15)] + [f"right-{i}" for i in range(15)])
    assert len(index.hits("shared", 50)) == 30 and len(index.hits("right", 50, {"source": "right"})) == 15


def test_a_busy_writer_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "lex"
    holder = LexicalIndex(path)
    holder.count()
    held = holder._index().writer(heap_size=15_000_000, num_threads=1)  # as another writer would
    try:
        with pytest.raises(TimeoutError, match="another writer"):
            LexicalIndex(path, lock_timeout=0.3).upsert(["a"], ["zebra"])
    finally:
        del held
    LexicalIndex(path, lock_timeout=5).upsert(["a"], ["zebra"])  # the lock was let go
    assert holder.count() == 1


def test_one_new_chunk_in_a_20k_chunk_index_rewrites_only_its_passage(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")
    n_docs = 10_000
    ids, texts, metas = [], [], []
    for d in range(n_docs):
        for c in range(2):
            ids.append(f"d{d}-c{c}")
            texts.append(f"document {d} chunk {c} word{d % 97} term{d % 89}")
            metas.append(chunk_meta(f"doc{d}.txt", c, 100 * c, 100 * c + 40))
    index.upsert(ids, texts, metas)
    assert index.count() == 2 * n_docs and index.passages_written == n_docs
    # a chunk appended to one document: that document's passage, nothing else
    index.upsert(["d5-c2"], ["an appended quokka"], [chunk_meta("doc5.txt", 2, 200, 218)])
    assert index.passages_written == n_docs + 1
    assert index.hits("quokka", 3)[0].id == "d5-c2"
    # a new document of one chunk: one passage
    index.upsert(["new-0"], ["a zebra alone"], [chunk_meta("new.txt", 0, 0, 13)])
    assert index.passages_written == n_docs + 2
    # a chunk replaced and one deleted: their passages only
    index.upsert(["d7-c0"], ["replaced with a marmot"], [chunk_meta("doc7.txt", 0, 0, 22)])
    index.delete(["d9-c1"])
    assert index.passages_written == n_docs + 4
    assert index.count() == 2 * n_docs + 1
    assert index.hits("marmot", 1)[0].id == "d7-c0" and index.get(["d9-c1"]) == []


def test_an_edited_document_is_cut_again_as_a_fresh_ingest_would(tmp_path: Path) -> None:
    """The indexer's pattern for an edited file: new chunk ids upserted, then the old ones deleted."""
    index = LexicalIndex(tmp_path / "lex")
    old = [f"old-{i}" for i in range(4)]
    metas = [chunk_meta("a.txt", i, 10 * i, 10 * i + 9) for i in range(4)]
    index.upsert(old, [f"old text {i}" for i in range(4)], metas)
    new = [f"new-{i}" for i in range(4)]
    index.upsert(new, [f"edited text {i} quokka" for i in range(4)], metas)
    index.delete(old)
    passages = index._all()
    assert [sorted(m.id for m in p.members) for p in passages] == [new]  # one passage, as first cut
    assert index.count() == 4 and len(index.hits("quokka", 10)) == 1


def test_a_long_document_grows_at_its_end_without_rewriting_the_rest(tmp_path: Path) -> None:
    index = LexicalIndex(tmp_path / "lex")
    n = 100  # 25 passages of 4, more than the whole-document recut bound
    index.upsert([f"c{i}" for i in range(n)], [f"chunk {i} text" for i in range(n)],
                 [chunk_meta("long.txt", i, 20 * i, 20 * i + 15) for i in range(n)])
    assert index.passages_written == 25
    index.upsert(["c100"], ["appended quokka"], [chunk_meta("long.txt", 100, 2000, 2015)])
    assert index.passages_written == 25 + 2  # the last passage (4 chunks) and the new one: 5 -> 2 + 3
    assert index.hits("quokka", 1)[0].id == "c100" and index.count() == n + 1
    index.delete(["c50"])
    assert index.passages_written == 25 + 3  # the passage that held it, cut again
    assert index.get(["c50"]) == [] and index.count() == n
    assert sorted(m.id for p in index._all() for m in p.members) == sorted(f"c{i}" for i in range(101) if i != 50)
