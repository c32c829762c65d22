"""Lexical engines compared: tantivy vs SQLite FTS5 (vs today's bm25s), on SciFact and at scale.

Part 1, SciFact test (300 queries), chunked as ``benchmarks/retrieval_scifact.py`` chunks it (the
default splitter: 256 MiniLM tokens, 32 overlap; ``--splitter recursive`` for
RecursiveCharacterSplitter's defaults). Each engine indexes either the chunks or passages of whole
documents (up to 4 consecutive chunks of one document joined, overlaps taken once: plait's scoring
unit). nDCG@10 and recall@100 over documents (the top 200 units, first hit per document, as the
SciFact benchmark does), query p50 at k=10, the same with a metadata filter (``topic``, one of 8
values, added to every chunk), write speed (index + commit) and size on disk.

Part 2, ``--scale N`` synthetic chunks (SciFact sentences, 5 per chunk, see
``retrieval_scale.synthetic_chunks``), engines alone, chunk-level: write speed, query and filtered
query p50 (100 SciFact claims), "add one chunk, commit, query and find it", disk.

Analyzers: tantivy ``en_stem`` (lower-case, Snowball English; no stopwords), and the same with
Lucene's 33 English stopwords (tantivy's ``stopword("english")``, the list bm25s uses); FTS5
``porter unicode61`` (Porter 1, no stopwords), and FTS5 on text pre-tokenized exactly as today's
bm25s index does (stopwords + Snowball via PyStemmer). BM25 parameters are each engine's fixed ones
(tantivy and FTS5: k1 1.2, b 0.75; bm25s as plait sets it: 0.9 / 0.4). ``plait LexicalIndex`` is
:class:`plait.retrievers.lexical.LexicalIndex` itself (tantivy, passages, best chunk per hit).

Timings are wall clock on a shared 2-core machine: run with ``nice``, expect noise of +-30%.

    nice python benchmarks/lexical_engines.py                  # SciFact + 200k-chunk scale part
    nice python benchmarks/lexical_engines.py --scale 0        # SciFact only
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from retrieval_scale import synthetic_chunks  # noqa: E402
from retrieval_scifact import DEFAULT_DATA, load_beir, ndcg_at, percentile, recall_at  # noqa: E402

TOPICS = [f"t{i}" for i in range(8)]
Unit = tuple[str, str, str, str]  # (unit id, text, topic, corpus id)


def disk_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


# --- the engines: build(units) once, then query(text, k, topic) -> unit ids, best first ---------------
class Tantivy:
    def __init__(self, folder: Path, stopwords: bool) -> None:
        import tantivy as T

        self.T, self.folder = T, folder
        b = T.TextAnalyzerBuilder(T.Tokenizer.simple()).filter(T.Filter.remove_long(40)).filter(T.Filter.lowercase())
        if stopwords:
            b = b.filter(T.Filter.stopword("english"))
        self.analyzer = b.filter(T.Filter.stemmer("english")).build()
        sb = T.SchemaBuilder()
        sb.add_text_field("uid", stored=True, tokenizer_name="raw", index_option="basic")
        sb.add_text_field("body", tokenizer_name="an", index_option="freq")
        sb.add_text_field("topic", tokenizer_name="raw", index_option="basic")
        self.schema = sb.build()
        folder.mkdir(parents=True, exist_ok=True)
        self.index = T.Index(self.schema, path=str(folder))
        self.index.register_tokenizer("an", self.analyzer)
        self.index.config_reader("manual")

    def build(self, units: Sequence[Unit]) -> None:
        w = self.index.writer(heap_size=100_000_000, num_threads=1)
        for uid, text, topic, _ in units:
            w.add_document(self.T.Document(uid=uid, body=text, topic=topic))
        w.commit()
        w.wait_merging_threads()
        self.index.reload()

    def add_one(self, uid: str, text: str, topic: str) -> None:
        w = self.index.writer(heap_size=20_000_000, num_threads=1)
        w.add_document(self.T.Document(uid=uid, body=text, topic=topic))
        w.commit()
        w.wait_merging_threads()
        self.index.reload()

    def query(self, text: str, k: int, topic: str | None = None) -> list[str]:
        T = self.T
        terms = [T.Query.term_query(self.schema, "body", t) for t in self.analyzer.analyze(text)]
        if not terms:
            return []
        q = T.Query.boolean_query([(T.Occur.Should, t) for t in terms])
        if topic is not None:
            f = T.Query.const_score_query(T.Query.term_query(self.schema, "topic", topic), 0.0)
            q = T.Query.boolean_query([(T.Occur.Must, q), (T.Occur.Must, f)])
        s = self.index.searcher()
        return [s.doc(a)["uid"][0] for _, a in s.search(q, k, count=False).hits]


class FTS5:
    def __init__(self, file: Path, pretokenized: bool) -> None:
        self.file, self.pre = file, pretokenized
        self.db = sqlite3.connect(file)
        tok = "unicode61" if pretokenized else "porter unicode61"
        self.db.execute(f"CREATE VIRTUAL TABLE t USING fts5(body, uid UNINDEXED, topic UNINDEXED, tokenize='{tok}')")
        self._tok: Any = None

    def _tokens(self, texts: Sequence[str]) -> list[list[str]]:
        if self.pre:
            if self._tok is None:
                from _bm25s_baseline import BM25Index

                self._tok = BM25Index()
            return self._tok.tokenize(texts)
        return [re.findall(r"\w+", t.lower()) for t in texts]

    def build(self, units: Sequence[Unit]) -> None:
        bodies = [" ".join(t) for t in self._tokens([u[1] for u in units])] if self.pre else [u[1] for u in units]
        with self.db:
            self.db.executemany("INSERT INTO t (body, uid, topic) VALUES (?, ?, ?)",
                                [(b, u[0], u[2]) for b, u in zip(bodies, units, strict=True)])

    def add_one(self, uid: str, text: str, topic: str) -> None:
        body = " ".join(self._tokens([text])[0]) if self.pre else text
        with self.db:
            self.db.execute("INSERT INTO t (body, uid, topic) VALUES (?, ?, ?)", (body, uid, topic))

    def query(self, text: str, k: int, topic: str | None = None) -> list[str]:
        toks = dict.fromkeys(self._tokens([text])[0])
        if not toks:
            return []
        match = " OR ".join(f'"{t}"' for t in toks)
        if topic is None:
            rows = self.db.execute("SELECT uid FROM t WHERE t MATCH ? ORDER BY rank LIMIT ?", (match, k))
        else:
            rows = self.db.execute("SELECT uid FROM t WHERE t MATCH ? AND topic = ? ORDER BY rank LIMIT ?",
                                   (match, topic, k))
        return [r[0] for r in rows]


class BM25s:
    """Today's index (benchmarks/_bm25s_baseline.py, in memory), rebuilt on the first query."""

    def __init__(self, window: int) -> None:
        from _bm25s_baseline import BM25Index

        self.index = BM25Index(window=window)

    def build(self, units: Sequence[Any]) -> None:
        self.index.upsert([u[0] for u in units], [u[1] for u in units], [u[2] for u in units])
        self.index.hits("warm up", 1)  # the rebuild is part of the write

    def query(self, text: str, k: int, topic: str | None = None) -> list[str]:
        return [h.id for h in self.index.hits(text, k, {"topic": topic} if topic else None)]


# --- SciFact ------------------------------------------------------------------------------------------
def scifact_chunks(data: Path, splitter_name: str) -> list[Any]:
    from plait.retrievers.indexing import chunk_id
    from plait.retrievers.loaders import JSONLLoader

    docs = JSONLLoader(("title", "text"), id_key="_id")(data / "corpus.jsonl")
    for d in docs:
        d.metadata["topic"] = TOPICS[int(d.metadata["line"]) % len(TOPICS)]
    if splitter_name == "recursive":
        from plait.retrievers.splitters import RecursiveCharacterSplitter

        splitter: Any = RecursiveCharacterSplitter()
    else:
        from plait.local_models.embeddings.sentence_transformer import SentenceTransformerEmbeddings
        from plait.retrievers.indexing import DefaultSplitter

        splitter = DefaultSplitter(SentenceTransformerEmbeddings())
    chunks = splitter.split_documents(docs)
    for c in chunks:
        c.id = chunk_id(str(c.metadata["source"]), c)
    return chunks


def passage_units(chunks: Sequence[Any], window: int = 4) -> list[Unit]:
    """Passages of whole documents: plait's rule (see plait.retrievers.lexical.partition)."""
    from plait.retrievers.base import document_key
    from plait.retrievers.lexical import join_chunks, partition

    groups: dict[Any, list[Any]] = {}
    for c in chunks:
        groups.setdefault(document_key(c.id, c.metadata), []).append(c)
    units: list[Unit] = []
    for members in groups.values():
        members.sort(key=lambda c: (c.metadata.get("start", -1), c.metadata.get("chunk", -1)))
        for run in partition(members, window):
            text = join_chunks([c.content for c in run], [c.metadata for c in run])
            m = run[0].metadata
            units.append((f"p{len(units)}", text, m["topic"], m["record_id"]))
    return units


def evaluate(query: Callable[[str, int], list[str]], doc_of: dict[str, str], queries: dict[str, str],
             qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    nd, rc = [], []
    for qid, rel in qrels.items():
        ranked = list(dict.fromkeys(doc_of[u] for u in query(queries[qid], 200)))[:100]
        nd.append(ndcg_at(ranked, rel))
        rc.append(recall_at(ranked, rel))
    return {"ndcg10": round(statistics.fmean(nd), 4), "recall100": round(statistics.fmean(rc), 4)}


def p50_ms(fn: Callable[..., Any], runs: Sequence[Any]) -> float:
    times = []
    for r in runs:
        t = time.perf_counter()
        fn(r)
        times.append((time.perf_counter() - t) * 1000)
    return round(percentile(times, 50), 3)


def scifact_part(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    _, queries, qrels = load_beir(args.data)
    chunks = scifact_chunks(args.data, args.splitter)
    chunk_units: list[Unit] = [(c.id, c.content, c.metadata["topic"], c.metadata["record_id"]) for c in chunks]
    passages = passage_units(chunks)
    print(f"SciFact: {len(chunks)} chunks, {len(passages)} passages, {len(qrels)} queries", flush=True)
    claims = [queries[q] for q in qrels]
    rows: list[dict[str, Any]] = []
    engines: list[tuple[str, Callable[[Path], Any]]] = [
        ("tantivy en_stem", lambda p: Tantivy(p, stopwords=False)),
        ("tantivy en_stem+stopwords", lambda p: Tantivy(p, stopwords=True)),
        ("fts5 porter", lambda p: FTS5(p.with_suffix(".sqlite"), pretokenized=False)),
        ("fts5 pretokenized (as bm25s)", lambda p: FTS5(p.with_suffix(".sqlite"), pretokenized=True)),
    ]
    for name, make in engines:
        for unit, units in (("chunks", chunk_units), ("passages", passages)):
            folder = tmp / f"{len(rows)}"
            engine = make(folder)
            t = time.perf_counter()
            engine.build(units)
            write_s = time.perf_counter() - t
            doc_of = {u[0]: u[3] for u in units}
            q = evaluate(engine.query, doc_of, queries, qrels)
            rows.append({"engine": name, "unit": unit, **q,
                         "query_p50_ms": p50_ms(lambda c, e=engine: e.query(c, 10), claims),
                         "filtered_p50_ms": p50_ms(lambda c, e=engine: e.query(c, 10, "t3"), claims),
                         "write_chunks_per_s": round(len(chunks) / write_s),
                         "disk_mb": round(disk_mb(folder if folder.exists() else folder.with_suffix(".sqlite")), 1)})
            print(rows[-1], flush=True)
    for window, unit in ((1, "chunks"), (4, "passages")):
        engine = BM25s(window)
        t = time.perf_counter()
        engine.build([(c.id, c.content, c.metadata) for c in chunks])
        write_s = time.perf_counter() - t
        doc_of = {c.id: c.metadata["record_id"] for c in chunks}
        q = evaluate(engine.query, doc_of, queries, qrels)
        rows.append({"engine": "bm25s (today)", "unit": unit, **q,
                     "query_p50_ms": p50_ms(lambda c, e=engine: e.query(c, 10), claims),
                     "filtered_p50_ms": p50_ms(lambda c, e=engine: e.query(c, 10, "t3"), claims),
                     "write_chunks_per_s": round(len(chunks) / write_s), "disk_mb": None})
        print(rows[-1], flush=True)
    rows.append(plait_lexical(chunks, queries, qrels, claims, tmp / "plait"))
    print(rows[-1], flush=True)
    return rows


def plait_lexical(chunks: Sequence[Any], queries: dict[str, str], qrels: dict[str, dict[str, int]],
                  claims: list[str], folder: Path) -> dict[str, Any]:
    from plait.retrievers.lexical import LexicalIndex

    index = LexicalIndex(folder)
    t = time.perf_counter()
    index.upsert([c.id for c in chunks], [c.content for c in chunks], [c.metadata for c in chunks])
    write_s = time.perf_counter() - t
    doc_of = {c.id: c.metadata["record_id"] for c in chunks}
    q = evaluate(lambda text, k: [h.id for h in index.hits(text, k)], doc_of, queries, qrels)
    row = {"engine": "plait LexicalIndex (tantivy)", "unit": "passages", **q,
           "query_p50_ms": p50_ms(lambda c: index.hits(c, 10), claims),
           "filtered_p50_ms": p50_ms(lambda c: index.hits(c, 10, {"topic": "t3"}), claims),
           "write_chunks_per_s": round(len(chunks) / write_s), "disk_mb": round(disk_mb(folder), 1)}
    index.close()
    return row


# --- scale ----------------------------------------------------------------------------------------------
def scale_part(n: int, data: Path, tmp: Path) -> list[dict[str, Any]]:
    units: list[Unit] = [(i, text, str(m["topic"]), "") for i, text, m in synthetic_chunks(n, data=data)]
    _, queries, qrels = load_beir(data)
    claims = [queries[q] for q in list(qrels)[:100]]
    rows: list[dict[str, Any]] = []
    for name, make in (("tantivy en_stem+stopwords", lambda p: Tantivy(p, stopwords=True)),
                       ("fts5 porter", lambda p: FTS5(p.with_suffix(".sqlite"), pretokenized=False))):
        folder = tmp / f"scale-{len(rows)}"
        engine = make(folder)
        t = time.perf_counter()
        engine.build(units)
        write_s = time.perf_counter() - t
        p50 = p50_ms(lambda c, e=engine: e.query(c, 10), claims)
        filtered = p50_ms(lambda c, e=engine: e.query(c, 10, "topic3"), claims)
        added = []
        for j in range(5):
            t = time.perf_counter()
            engine.add_one(f"new{j}", f"zyxwv{j} quokka telomerase", "topic3")
            found = engine.query(f"zyxwv{j} quokka", 1)
            added.append((time.perf_counter() - t) * 1000)
            assert found == [f"new{j}"], found
        rows.append({"engine": name, "chunks": n, "write_chunks_per_s": round(n / write_s), "query_p50_ms": p50,
                     "filtered_p50_ms": filtered, "add_one_then_query_ms": round(statistics.median(added), 1),
                     "disk_mb": round(disk_mb(folder if folder.exists() else folder.with_suffix(".sqlite")), 1)})
        print(rows[-1], flush=True)
        del engine
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--splitter", choices=["default", "recursive"], default="default")
    ap.add_argument("--scale", type=int, default=200_000, help="synthetic chunks for part 2 (0: skip)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="plait-lexical-"))
    try:
        rows = scifact_part(args, tmp)
        scale = scale_part(args.scale, args.data, tmp) if args.scale else []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"{'engine':30}{'unit':10}{'nDCG@10':>9}{'R@100':>8}{'q p50':>8}{'filt p50':>9}{'chunks/s':>10}{'MB':>7}")
    for r in rows:
        print(f"{r['engine']:30}{r['unit']:10}{r['ndcg10']:>9}{r['recall100']:>8}{r['query_p50_ms']:>8}"
              f"{r['filtered_p50_ms']:>9}{r['write_chunks_per_s']:>10}{r['disk_mb'] if r['disk_mb'] else '-':>7}")
    if scale:
        print(f"\n{'engine':30}{'chunks':>8}{'chunks/s':>10}{'q p50':>10}{'filt p50':>10}{'add1+q ms':>10}{'MB':>7}")
        for r in scale:
            print(f"{r['engine']:30}{r['chunks']:>8}{r['write_chunks_per_s']:>10}{r['query_p50_ms']:>10}"
                  f"{r['filtered_p50_ms']:>10}{r['add_one_then_query_ms']:>10}{r['disk_mb']:>7}")
    print(json.dumps({"scifact": rows, "scale": scale, "splitter": args.splitter}))


if __name__ == "__main__":
    main()
