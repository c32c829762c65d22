"""A plait :class:`~plait.retrievers.chroma.ChromaStore` as a LangChain ``VectorStore``.

``PlaitVectorStore(collection_name="docs", embedding=..., persist_directory=None)`` opens a Chroma
collection with plait's BM25 twin beside it: in memory when ``persist_directory`` is None (in-memory
collections of one process share their contents by name, as in Chroma), else embedded and
persistent in that folder. ``embedding`` is any LangChain ``Embeddings`` or plait ``Embeddings``
(default: the bundled all-MiniLM-L6-v2). Everything LangChain's ``VectorStore`` promises works
(``add_documents`` / ``add_texts`` with ids, ``get_by_ids``, ``delete``, ``similarity_search``,
``similarity_search_with_score``, ``max_marginal_relevance_search``, their async twins,
``from_texts``, ``as_retriever``), and ``as_retriever(search_type="hybrid")`` (or ``"bm25"``) gives
plait's hybrid (dense + BM25) or lexical retrieval over the same documents.

How it differs from other LangChain stores, on purpose:

- a document added without an id gets a stable id from its content and metadata, so adding the
  same document twice keeps one copy (plait's ingestion is idempotent);
- scores (``similarity_search_with_score``) are cosine similarities: higher is better, 1 is the
  same direction; relevance scores are the same, clipped to 0..1;
- metadata values Chroma cannot hold (lists, dicts) are stored as JSON text, ``None`` values are
  dropped; ``delete()`` needs ids or a ``filter`` (``delete_collection()`` drops everything).

Example::

    from langchain_core.documents import Document
    from plait.interop.langchain import PlaitVectorStore

    store = PlaitVectorStore(collection_name="pets")
    store.add_documents([Document(page_content="Cats purr."), Document(page_content="Dogs bark.")])
    store.similarity_search("Which animal purrs?", k=1)[0].page_content     # "Cats purr."
    store.as_retriever(search_type="hybrid", search_kwargs={"k": 1}).invoke("purring")
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings as LCEmbeddings
from langchain_core.vectorstores import VectorStore, VectorStoreRetriever

from plait.embeddings import Embeddings
from plait.interop.langchain.embeddings import PlaitEmbeddings
from plait.interop.langchain.runnables import LangChainEmbeddings
from plait.messages import Document
from plait.retrievers.chroma import ChromaStore

#: search types served by plait's own retrievers (the others by LangChain's ``VectorStoreRetriever``).
PLAIT_SEARCH_TYPES = ("hybrid", "bm25")


def plait_embeddings(embedding: Any) -> Embeddings | None:
    """plait embeddings for LangChain or plait ones (None: the store's default, the bundled MiniLM)."""
    if embedding is None or isinstance(embedding, Embeddings):
        return embedding
    if isinstance(embedding, PlaitEmbeddings):
        return embedding.plait_embeddings
    if isinstance(embedding, LCEmbeddings):
        return LangChainEmbeddings(embedding)
    raise TypeError(f"embedding must be LangChain or plait Embeddings, not {type(embedding).__name__}")


def _lc_document(doc: Document) -> LCDocument:
    return LCDocument(page_content=doc.content, metadata=dict(doc.metadata), id=doc.id)


class PlaitVectorStore(VectorStore):
    """A Chroma collection with plait's BM25 twin, as a LangChain ``VectorStore``. See the module docstring.

    Args:
        collection_name: the Chroma collection (3-512 characters of ``[a-zA-Z0-9._-]``).
        embedding: LangChain or plait embeddings; default the bundled all-MiniLM-L6-v2.
        persist_directory: the folder of an embedded, persistent store; None keeps it in memory.
    """

    def __init__(self, collection_name: str = "langchain", embedding: Any = None,
                 persist_directory: str | None = None) -> None:
        emb = plait_embeddings(embedding)
        if persist_directory is None:
            store = ChromaStore.in_memory(collection_name, embeddings=emb)
        else:
            store = ChromaStore(collection_name, embeddings=emb, path=persist_directory)
        self._init(store, embedding)

    def _init(self, store: ChromaStore, embedding: Any) -> None:
        self.store = store
        self._embedding = embedding if isinstance(embedding, LCEmbeddings) else None

    @classmethod
    def from_store(cls, store: ChromaStore) -> PlaitVectorStore:
        """Wrap an open plait ``ChromaStore`` (its documents, embeddings and BM25 twin stay as they are)."""
        self = cls.__new__(cls)
        self._init(store, None)
        return self

    def __repr__(self) -> str:
        return f"PlaitVectorStore({self.store!r})"

    @property
    def embeddings(self) -> LCEmbeddings:
        if self._embedding is None:
            self._embedding = PlaitEmbeddings(model=self.store.embeddings)
        return self._embedding

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda score: min(1.0, max(0.0, score))  # a cosine similarity; below 0 is unrelated

    # --- writing ---------------------------------------------------------------------------------
    def _documents(self, documents: Sequence[LCDocument], ids: Sequence[str | None] | None) -> list[Document]:
        if ids is not None and len(ids) != len(documents):
            raise ValueError(f"Got {len(ids)} ids for {len(documents)} documents; give one id per document")
        return [Document(content=d.page_content, metadata=dict(d.metadata),
                         id=(ids[i] if ids is not None and ids[i] else d.id) or None)
                for i, d in enumerate(documents)]

    def add_documents(self, documents: list[LCDocument], **kwargs: Any) -> list[str]:
        """Insert or replace ``documents`` by id (``ids=`` or ``Document.id``; else a content hash)."""
        return self.store.upsert(self._documents(documents, kwargs.get("ids")))

    async def aadd_documents(self, documents: list[LCDocument], **kwargs: Any) -> list[str]:
        docs = self._documents(documents, kwargs.get("ids"))
        if not docs:
            return []
        vectors = await self.store.embeddings.aembed_documents([d.content for d in docs])
        return await asyncio.to_thread(self.store.upsert, docs, embeddings=vectors)

    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        texts = list(texts)
        metas = metadatas or [{} for _ in texts]
        if len(metas) != len(texts):
            raise ValueError(f"Got {len(metas)} metadatas for {len(texts)} texts; give one per text")
        return self.add_documents([LCDocument(page_content=t, metadata=m) for t, m in zip(texts, metas, strict=True)],
                                  ids=ids)

    async def aadd_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                         ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        texts = list(texts)
        metas = metadatas or [{} for _ in texts]
        if len(metas) != len(texts):
            raise ValueError(f"Got {len(metas)} metadatas for {len(texts)} texts; give one per text")
        return await self.aadd_documents(
            [LCDocument(page_content=t, metadata=m) for t, m in zip(texts, metas, strict=True)], ids=ids)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete by ids and/or ``filter=`` (a metadata filter). Ids that are not there are ignored."""
        filter = kwargs.pop("filter", None)
        if kwargs:
            raise TypeError(f"Unknown delete() arguments {sorted(kwargs)}; use ids and filter")
        if ids is None and not filter:
            raise ValueError("delete() needs ids or a filter; delete_collection() drops the whole collection")
        if ids is not None and not ids and not filter:
            return True
        self.store.delete(ids, filter=filter)
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        return await asyncio.to_thread(self.delete, ids, **kwargs)

    def delete_collection(self) -> None:
        """Drop the collection's documents (Chroma and the BM25 twin)."""
        self.store.clear()

    # --- reading ---------------------------------------------------------------------------------
    def get_by_ids(self, ids: Sequence[str], /) -> list[LCDocument]:
        """The documents with these ids; missing ids are left out."""
        return [_lc_document(d) for d in self.store.get(list(ids))] if ids else []

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[LCDocument]:
        return await asyncio.to_thread(self.get_by_ids, ids)

    def similarity_search_with_score(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                                     **kwargs: Any) -> list[tuple[LCDocument, float]]:
        """The ``k`` nearest documents and their cosine similarity to ``query`` (best first)."""
        return self._scored(self.store.similarity_search(query, k, filter=filter))

    async def asimilarity_search_with_score(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                                            **kwargs: Any) -> list[tuple[LCDocument, float]]:
        vector = await self.store.embeddings.aembed_query(query)
        return await asyncio.to_thread(self.similarity_search_by_vector_with_score, vector, k, filter)

    def similarity_search(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                          **kwargs: Any) -> list[LCDocument]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter)]

    async def asimilarity_search(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                                 **kwargs: Any) -> list[LCDocument]:
        return [d for d, _ in await self.asimilarity_search_with_score(query, k, filter)]

    def similarity_search_by_vector_with_score(self, embedding: list[float], k: int = 4,
                                               filter: dict[str, Any] | None = None) -> list[tuple[LCDocument, float]]:
        return self._scored(self.store.similarity_search_by_vector(embedding, k, filter=filter))

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, filter: dict[str, Any] | None = None,
                                    **kwargs: Any) -> list[LCDocument]:
        return [d for d, _ in self.similarity_search_by_vector_with_score(embedding, k, filter)]

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
                                      filter: dict[str, Any] | None = None, **kwargs: Any) -> list[LCDocument]:
        docs = self.store.mmr_search(query, k, fetch_k=fetch_k, lambda_mult=lambda_mult, filter=filter)
        return [_lc_document(d) for d in docs]

    @staticmethod
    def _scored(docs: list[Document]) -> list[tuple[LCDocument, float]]:
        return [(_lc_document(d), float(d.score if d.score is not None else 0.0)) for d in docs]

    # --- construction and retrievers -------------------------------------------------------------
    @classmethod
    def from_texts(cls, texts: list[str], embedding: Any = None, metadatas: list[dict[str, Any]] | None = None, *,
                   ids: list[str] | None = None, collection_name: str | None = None,
                   persist_directory: str | None = None, **kwargs: Any) -> PlaitVectorStore:
        """A new store holding ``texts`` (an in-memory collection with a fresh name unless one is given)."""
        if kwargs:
            raise TypeError(f"Unknown from_texts() arguments {sorted(kwargs)}")
        name = collection_name or f"langchain-{uuid.uuid4().hex[:12]}"
        store = cls(collection_name=name, embedding=embedding, persist_directory=persist_directory)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def as_retriever(self, **kwargs: Any) -> Any:
        """A retriever over this store. ``search_type``: LangChain's ``"similarity"`` (default), ``"mmr"``,
        ``"similarity_score_threshold"``, or plait's ``"hybrid"`` (dense + BM25 fusion) and ``"bm25"``;
        ``search_kwargs``: ``k``, ``filter``, ``score_threshold`` and the plait retriever's options
        (``fusion``, ``weight``, ``fetch_k``...)."""
        search_type = kwargs.get("search_type", "similarity")
        if search_type not in PLAIT_SEARCH_TYPES:
            retriever: VectorStoreRetriever = super().as_retriever(**kwargs)
            return retriever
        from plait.interop.langchain.retriever import PlaitRetriever

        search_kwargs = dict(kwargs.get("search_kwargs") or {})
        k = search_kwargs.pop("k", 4)
        extra = {key: v for key, v in kwargs.items() if key in ("tags", "metadata", "name")}
        return PlaitRetriever(vectorstore=self, search_type=search_type, k=k, search_kwargs=search_kwargs, **extra)
