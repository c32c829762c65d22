"""The vector store: a Chroma collection (embedded, in memory, or a Chroma server) plus its lexical twin.

Three ways to open one, same API:

- ``ChromaStore("docs")``: embedded and persistent (``chromadb.PersistentClient``) under
  ``plait.defaults.chroma_dir()`` (``$PLAIT_HOME/chroma``), or under ``path=``;
- ``ChromaStore.in_memory("docs")``: nothing touches the disk (tests, notebooks);
- ``ChromaStore.http("docs", host="127.0.0.1", port=8000)``: a Chroma server (``chroma run``),
  the path past one machine.

Every write goes to Chroma and to a lexical (BM25) index over the same chunks (``store.bm25``, any
:class:`~plait.retrievers.base.KeywordIndex`: :class:`~plait.retrievers.lexical.LexicalIndex` by
default, updated in O(changed) by every write), so lexical and hybrid search always see what dense
search sees. The lexical index is a directory beside the collection: ``<path>/plait/<collection>.lexical/``
for the embedded store, ``$PLAIT_HOME/chroma-servers/<host>_<port>/<collection>.lexical/`` for a
server, in memory for the in-memory store; the ingestion record lives in the "sidecar" SQLite file
beside it (``<collection>.sqlite``). The index is refilled from Chroma only when asked
(:meth:`ChromaStore.rebuild_lexical`, ``plait index rebuild COLLECTION``) or when, on first use in a
process, its chunk count differs from Chroma's (a missing or damaged index).

Every process sees every write at its next query (:mod:`plait.retrievers.chroma_sync`): on one
embedded directory, a vector query reopens the client when another process wrote to Chroma, and
writes take an OS lock; on a Chroma server, every write appends change records to
``<collection>.plait-changes``, which every client applies to its lexical index before a query.

Vectors are compared by cosine (``Document.score``). Constructors and :meth:`ChromaStore.as_retriever`
(:func:`plait.retrievers.factory.store_retriever`) open nothing: the client, the collection and the
lexical index open on first use.

Example::

    from plait.messages import Document
    from plait.retrievers.chroma import ChromaStore
    store = ChromaStore.in_memory("demo")
    store.upsert([Document(content="Cats purr.", id="c"), Document(content="Dogs bark.", id="d")])
    store.similarity_search("Which animal purrs?", k=1)[0].id        # "c"
    store.as_retriever(k=1).invoke("purring")                          # hybrid by default
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.messages import Document
from plait.retrievers.base import Filter, Hit, KeywordIndex, Retriever, document_id, to_chroma_where
from plait.retrievers.bm25 import BM25Retriever
from plait.retrievers.chroma_client import chroma_metadata, open_http, open_memory, open_persistent
from plait.retrievers.chroma_client import chroma_metadata as _chroma_metadata  # noqa: F401 - the former name
from plait.retrievers.chroma_client import settings as _settings  # noqa: F401 - the former name
from plait.retrievers.chroma_search import FilterPlan, nearest
from plait.retrievers.chroma_sync import ChangeFeed, EmbeddedWatch, Gate, refill_lexical, refresh_lexical
from plait.retrievers.lexical import LexicalIndex

if TYPE_CHECKING:
    from plait.embeddings import Embeddings


_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]")


class ChromaStore:
    """A Chroma collection with a lexical twin. See the module docstring.

    Args:
        collection: collection name (3-512 characters of ``[a-zA-Z0-9._-]``).
        embeddings: an :class:`plait.embeddings.Embeddings`; default the bundled MiniLM.
        path: the embedded store's folder; default ``plait.defaults.chroma_dir()``.
        client: an existing chromadb client to use instead (then give ``sidecar`` too, or None
            for an in-memory lexical index).
        sidecar: the SQLite file of the ingestion record (default: see module docstring); the
            lexical index is the directory beside it, ``<sidecar stem>.lexical``.
        bm25: keep the lexical twin (needed by the BM25 and hybrid retrievers).
    """

    def __init__(self, collection: str = "default", *, embeddings: Embeddings | None = None,
                 path: str | Path | None = None, client: Any = None, sidecar: str | Path | None = None,
                 bm25: bool = True, _mode: str = "persistent",
                 _http: tuple[str, int, bool, dict[str, str] | None] | None = None) -> None:
        if not _NAME.fullmatch(collection):
            raise ValueError(f"Collection name {collection!r} is not allowed: use 3-512 characters of "
                             "a-z, A-Z, 0-9, '.', '_', '-', starting and ending with a letter or digit")
        self.collection_name = collection
        self._embeddings = embeddings
        self._client = client
        self._collection: Any = None
        self._lock = threading.RLock()
        self.mode = "client" if client is not None else _mode
        self._http = _http
        self.path = Path(path) if path is not None and self.mode == "persistent" else None
        if sidecar is None and self.mode == "persistent":
            sidecar = self._persistent_path() / "plait" / f"{collection}.sqlite"
        self.sidecar = str(sidecar) if sidecar is not None else None
        self.lexical_dir = Path(sidecar).with_suffix(".lexical") if sidecar is not None else None
        self.bm25: KeywordIndex | None = LexicalIndex(self.lexical_dir) if bm25 else None
        self._synced = False
        self._batch: int | None = None
        self._watch: EmbeddedWatch | None = None  # embedded: other processes' writes to Chroma
        self._feed: ChangeFeed | None = None  # server: the change log every client follows
        self._gate = Gate()  # embedded: reads in flight, waited for by a reopen
        self.filter_plan = FilterPlan()  # when a filtered vector query over-fetches (chroma_search)
        self.dense_plans: Counter[str] = Counter()  # how each vector query was asked

    def _persistent_path(self) -> Path:
        if self.path is None:
            from plait.defaults import chroma_dir

            self.path = chroma_dir()
        return self.path

    @classmethod
    def in_memory(cls, collection: str = "default", *, embeddings: Embeddings | None = None,
                  bm25: bool = True) -> ChromaStore:
        """A store that lives in this process only (``chromadb.EphemeralClient``).

        In-memory clients of one process share their collections: use distinct names.
        """
        return cls(collection, embeddings=embeddings, bm25=bm25, _mode="memory")

    @classmethod
    def http(cls, collection: str = "default", *, host: str = "localhost", port: int = 8000, ssl: bool = False,
             headers: dict[str, str] | None = None, embeddings: Embeddings | None = None,
             sidecar: str | Path | None = None, bm25: bool = True) -> ChromaStore:
        """A collection on a Chroma server (``chroma run --path DIR --port 8000``)."""
        if sidecar is None:
            from plait.defaults import data_dir

            sidecar = data_dir() / "chroma-servers" / f"{host}_{port}" / f"{collection}.sqlite"
        return cls(collection, embeddings=embeddings, sidecar=sidecar, bm25=bm25, _mode="http",
                   _http=(host, port, ssl, headers))

    def __repr__(self) -> str:
        where = {"persistent": self.path, "memory": "memory", "http": self._http and self._http[:2]}.get(self.mode)
        return f"ChromaStore({self.collection_name!r}, mode={self.mode!r}, at={where!r})"

    # --- lazy pieces -----------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Do now what the first query would: load the embedding model, open the collection and
        bring the lexical index in line with it."""
        self.embeddings.warm_up()
        _ = self.collection
        if self.bm25 is not None:
            self.lexical_index()

    @property
    def embeddings(self) -> Embeddings:
        if self._embeddings is None:
            from plait.defaults import default_embeddings

            self._embeddings = default_embeddings()
        return self._embeddings

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                if self.mode == "memory":
                    self._client = open_memory()
                elif self.mode == "http":
                    assert self._http is not None
                    self._client = open_http(*self._http)
                else:
                    path = self._persistent_path()
                    path.mkdir(parents=True, exist_ok=True)
                    if self._watch is None:
                        self._watch = EmbeddedWatch(path)
                    seen = self._watch.mark()  # before opening: a write meanwhile shows as a change
                    self._client = open_persistent(path)
                    self._watch.seen = seen
            return self._client

    def _reopen_if_stale(self) -> None:  # embedded: another process wrote to Chroma since the client loaded
        with self._lock:
            if self._watch is not None and self._client is not None and self._watch.stale():
                self._gate.close(self._client)  # once the other threads' reads on it are done
                self._client = self._collection = None

    def _read(self, read: Any) -> Any:
        """``read(collection)``, on a client no other thread closes meanwhile (see :class:`Gate`)."""
        while True:
            with self._lock:
                collection, generation = self.collection, self._gate.generation
            with self._gate.using(generation) as current:
                if current:
                    return read(collection)

    @contextmanager
    def _writing(self, op: str, ids: Sequence[str]) -> Iterator[None]:
        """Around a write: embedded, the directory's write lock; on a server, the change records after it."""
        with self._lock:
            if self.mode == "persistent":
                _ = self.client  # opens the watch
                assert self._watch is not None
                with self._watch.writing(self._reopen_if_stale):
                    yield
            else:
                yield
                if self.mode == "http":  # every client's writes, so that the others can follow
                    self.feed().record(op, ids)

    def feed(self) -> ChangeFeed:
        """The change log of this collection on its Chroma server (see :mod:`plait.retrievers.chroma_sync`)."""
        if self.mode != "http":
            raise ValueError(f"{self!r} is not on a Chroma server; only a server's clients follow a change log")
        with self._lock:
            if self._feed is None:
                self._feed = ChangeFeed(self.client, self.collection_name, self.lexical_dir)
            return self._feed

    @property
    def collection(self) -> Any:
        with self._lock:
            if self._collection is None:
                self._collection = self.client.get_or_create_collection(
                    self.collection_name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)
            return self._collection

    def lexical_index(self, *, follow: bool = True) -> KeywordIndex:
        """The lexical side. On its first use in this object its chunk count is checked against
        Chroma's once, and a missing or damaged index is refilled from Chroma; after that every
        write keeps it in line: this process's through the store, other processes' on this
        machine through the shared index directory, and, on a Chroma server, other clients'
        through the change log, followed here unless ``follow`` is False (one round trip)."""
        if self.bm25 is None:
            raise ValueError(f"{self!r} was opened with bm25=False; open it with bm25=True for lexical search")
        with self._lock:
            if not self._synced:
                if self.bm25.count() != self.count():
                    self._rebuild_lexical(self.bm25)
                self._synced = True
            if follow and self.mode == "http":
                def refill() -> None:
                    self._collection = None  # after another client's clear, the collection is a new one
                    self._rebuild_lexical(self.bm25)  # type: ignore[arg-type]

                self.feed().follow(refill, lambda ids: refresh_lexical(self, ids))
        return self.bm25

    def rebuild_lexical(self) -> int:
        """Refill the lexical index from Chroma, whatever it holds now (``plait index rebuild``).

        Returns: the chunks indexed.
        """
        if self.bm25 is None:
            raise ValueError(f"{self!r} was opened with bm25=False; there is no lexical index to rebuild")
        with self._lock:
            self._rebuild_lexical(self.bm25)
            self._synced = True
            return self.bm25.count()

    def _rebuild_lexical(self, lexical: KeywordIndex) -> None:
        refill_lexical(self, lexical)

    # --- writing ---------------------------------------------------------------------------------
    def upsert(self, documents: Sequence[Document], *, embeddings: Any = None) -> list[str]:
        """Insert or replace documents by id (a stable content hash where ``Document.id`` is None).

        Args:
            documents: the chunks to store.
            embeddings: their vectors, if already computed (else they are embedded here).
        Returns: the ids, in order.
        """
        docs = list(documents)
        if not docs:
            return []
        ids = [d.id or document_id(d) for d in docs]
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            raise ValueError(f"Two documents in one upsert share the id {dup!r}; ids must be unique")
        texts = [d.content for d in docs]
        if embeddings is None:
            emb = self.embeddings
            embeddings = emb.embed_array(texts)
        metas = [chroma_metadata(d.metadata) for d in docs]
        step = self._max_batch()
        with self._writing("upsert", ids):
            for start in range(0, len(ids), step):
                end = start + step
                self.collection.upsert(ids=ids[start:end], embeddings=embeddings[start:end],
                                       documents=texts[start:end], metadatas=metas[start:end])
            if self.bm25 is not None:  # the metadata as Chroma keeps it, so every retriever returns the same
                self.bm25.upsert(ids, texts, [m or {} for m in metas])
        return ids

    add_documents = upsert

    def _max_batch(self) -> int:
        """The most records Chroma takes in one write (asked once). A server that does not report
        it answers -1; then batches of 1000, a size every Chroma release accepts."""
        if self._batch is None:
            size = int(self.client.get_max_batch_size())
            self._batch = size if size > 0 else 1000
        return self._batch

    def delete(self, ids: Sequence[str] | None = None, *, filter: Filter | None = None) -> int:
        """Delete by ids and/or filter; returns how many ids were asked to go."""
        if ids is None and not filter:
            raise ValueError("delete() needs ids or a filter; use clear() to empty the collection")
        targets = list(ids or [])
        if filter:
            targets += [d.id for d in self.get(filter=filter) if d.id]
        if not targets:
            return 0
        step = self._max_batch()
        with self._writing("delete", targets):
            for start in range(0, len(targets), step):
                self.collection.delete(ids=targets[start:start + step])
            if self.bm25 is not None:
                self.bm25.delete(targets)
        return len(targets)

    def clear(self) -> None:
        """Delete the collection's contents (and the lexical twin's)."""
        from chromadb.errors import NotFoundError

        with self._lock, self._writing("clear", []):
            try:
                self.client.delete_collection(self.collection_name)
            except NotFoundError:  # nothing to delete; any other error (connection, permission) is raised
                pass
            self._collection = None
            if self.bm25 is not None:
                self.bm25.clear()
            self._synced = True

    # --- reading ---------------------------------------------------------------------------------
    def count(self) -> int:
        return int(self.collection.count())

    def get(self, ids: Sequence[str] | None = None, *, filter: Filter | None = None,
            limit: int | None = None, offset: int | None = None) -> list[Document]:
        """Stored documents by id and/or filter (no scores)."""
        got = self._read(lambda c: c.get(ids=list(ids) if ids is not None else None, where=to_chroma_where(filter),
                                         limit=limit, offset=offset, include=["documents", "metadatas"]))
        return [Document(id=i, content=c or "", metadata=m or {})
                for i, c, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)]

    def ids(self) -> list[str]:
        return sorted(self.collection.get(include=[])["ids"])

    def _query(self, vector: Any, k: int, filter: Filter | None, include: list[str]) -> dict[str, Any]:
        """Chroma's nearest ``k`` passing ``filter``: by a ``where``, by the passing ids or by
        over-fetching (:mod:`plait.retrievers.chroma_search`, which says when each)."""
        self._reopen_if_stale()
        passing = None
        if filter and isinstance(self.bm25, LexicalIndex):
            passing = self.lexical_index(follow=False).passing(filter)  # type: ignore[attr-defined]
        return nearest(self._read, vector, k, filter, passing, include, self.filter_plan, self.dense_plans)

    def similarity_search_by_vector(self, vector: Any, k: int = 4, *,
                                    filter: Filter | None = None) -> list[Document]:
        """The ``k`` chunks nearest to ``vector`` (``Document.score`` is the cosine similarity)."""
        return self.search_with_vectors(vector, k, filter=filter, vectors=False)[0]

    def search_with_vectors(self, vector: Any, k: int = 4, *, filter: Filter | None = None,
                            vectors: bool = True) -> tuple[list[Document], Any]:
        """The ``k`` nearest chunks and their stored vectors (a ``(n, dim)`` array; ``None`` unless
        ``vectors``), e.g. for maximal marginal relevance."""
        include = ["documents", "metadatas", "distances", "embeddings"] if vectors else \
            ["documents", "metadatas", "distances"]
        res = self._query(vector, k, filter, include)
        docs = [Document(id=i, content=c or "", metadata=m or {}, score=1.0 - float(dist))
                for i, c, m, dist in zip(res.get("ids", []), res.get("documents", []), res.get("metadatas", []),
                                         res.get("distances", []), strict=True)]
        return docs, res.get("embeddings") if vectors else None

    def similarity_hits(self, query: str, k: int = 4, *, filter: Filter | None = None) -> list[Hit]:
        """The ``k`` nearest chunks' ids, cosine similarities and metadata, without their texts.

        For fusion: Chroma returns ids and distances several times faster than texts and metadata;
        the metadata comes from the lexical twin's memory when there is one.
        """
        if self.mode == "http" and self.bm25 is not None:
            self.lexical_index()  # follow the change log first: metadata below is read from the lexical index
        res = self._query(self.embeddings.embed_query(query), k, filter, ["distances"])
        ids, dists = res.get("ids", []), res.get("distances", [])
        metas = self._metadata(ids)
        return [Hit(i, 1.0 - float(d), metas.get(i) or {}) for i, d in zip(ids, dists, strict=True)]

    def _metadata(self, ids: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = self.lexical_index(follow=False).metadata(ids) if self.bm25 is not None else {}
        missing = [i for i in ids if i not in found]
        if missing:
            got = self.collection.get(ids=missing, include=["metadatas"])
            found.update({i: m or {} for i, m in zip(got["ids"], got["metadatas"], strict=True)})
        return found

    def documents(self, ids: Sequence[str]) -> list[Document]:
        """The stored chunks with these ids (no scores), in order (missing ids left out); read from the
        lexical twin when there is one (much faster than Chroma)."""
        found = {d.id: d for d in self.lexical_index(follow=False).get(ids)} if self.bm25 is not None else {}
        missing = [i for i in ids if i not in found]
        if missing:
            found.update({d.id: d for d in self.get(missing)})
        return [found[i] for i in ids if i in found]

    def similarity_search(self, query: str, k: int = 4, *, filter: Filter | None = None) -> list[Document]:
        """The ``k`` nearest chunks by cosine similarity (``Document.score``)."""
        return self.similarity_search_by_vector(self.embeddings.embed_query(query), k, filter=filter)

    def lexical_search(self, query: str, k: int = 4, *, filter: Filter | None = None) -> list[Document]:
        """Keyword (BM25) search over the same chunks (``Document.score`` is the BM25 score)."""
        return BM25Retriever(self.lexical_index, k=k, filter=filter).invoke(query)

    def mmr_search(self, query: str, k: int = 4, *, fetch_k: int = 20, lambda_mult: float = 0.5,
                   filter: Filter | None = None) -> list[Document]:
        """Relevant chunks that differ from each other: ``as_retriever("mmr", ...).invoke(query)``
        (the algorithm is :func:`plait.retrievers.dense.mmr`)."""
        return self.as_retriever("mmr", k=k, fetch_k=fetch_k, lambda_mult=lambda_mult, filter=filter).invoke(query)

    def as_retriever(self, kind: str = "hybrid", **options: Any) -> Retriever:
        """A retriever over this store (opens nothing): see :func:`plait.retrievers.factory.store_retriever`."""
        from plait.retrievers.factory import store_retriever

        return store_retriever(self, kind, **options)
