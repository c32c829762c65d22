"""Two OS processes on one embedded store (one data dir), each already open.

Every write of either process is seen at the other's next query, on every side: the lexical index
(a tantivy directory every process reloads when another committed), Chroma's records
(``count``/``get``, read from Chroma's SQLite) and Chroma's vector queries. For the last, embedded
Chroma alone is not enough: it keeps each process's HNSW graph in memory and never reloads it
(chroma-core/chroma#3769, #3792, chromadb 1.5.9); the store notices another process's write by
Chroma's log sequence number and reopens its client (:mod:`plait.retrievers.chroma_sync`).
No lexical rebuild runs after ordinary writes, in either process.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plait.retrievers.chroma import ChromaStore
from plait.retrievers.lexical import LexicalIndex
from tests.retrievers.store_peer_child import Peer, found
from tests.retrievers.store_peer_child import write as _write


@pytest.fixture
def pair(tmp_path, monkeypatch) -> Iterator[tuple[ChromaStore, Peer, list[int]]]:
    path = tmp_path / "chroma"
    store = ChromaStore("peers", path=path)
    _write(store, "alpha")
    assert found(store, "alpha") == {"lexical": ["alpha"], "dense": ["alpha"]}
    assert isinstance(store.bm25, LexicalIndex) and store.bm25.path == path / "plait" / "peers.lexical"
    rebuilds: list[int] = []
    monkeypatch.setattr(store, "_rebuild_lexical", lambda lexical: rebuilds.append(1))
    peer = Peer(path, "peers")
    yield store, peer, rebuilds
    peer.close()


def test_an_ingest_process_and_an_open_store_see_each_others_writes(pair):
    store, peer, rebuilds = pair
    assert peer.ask("query alpha")["lexical"] == ["alpha"]
    _write(store, "beta")  # this process writes: the open peer sees it at its next query
    assert peer.ask("query beta")["lexical"] == ["beta"]
    assert peer.ask("write gamma") == {"wrote": "gamma"}  # the peer writes: this process sees it
    assert found(store, "gamma")["lexical"] == ["gamma"]
    assert [d.id for d in store.get(["gamma"])] == ["gamma"]  # and so do Chroma's records
    assert store.count() == 3 and store.bm25 is not None and store.bm25.count() == 3
    store.delete(["alpha"])
    assert peer.ask("query alpha")["lexical"] == []
    assert rebuilds == []  # every write reached the shared index: nothing was refilled from Chroma


def test_vector_queries_see_another_processs_writes_and_deletes(pair):
    store, peer, rebuilds = pair
    assert peer.ask("write gamma") == {"wrote": "gamma"}
    assert found(store, "gamma") == {"lexical": ["gamma"], "dense": ["gamma"]}
    _write(store, "delta")  # this process writes after the reopen: the peer's vector query sees it
    assert peer.ask("query delta") == {"lexical": ["delta"], "dense": ["delta"]}
    assert peer.ask("delete gamma") == {"deleted": "gamma"}
    assert found(store, "gamma")["lexical"] == [] and found(store, "gamma")["dense"] != ["gamma"]
    for i in range(3):  # both write in turns: neither loses the other's vectors
        _write(store, f"mine{i}")
        assert peer.ask(f"write theirs{i}") == {"wrote": f"theirs{i}"}
    for chunk_id in ["alpha", "delta"] + [f"{w}{i}" for w in ("mine", "theirs") for i in range(3)]:
        assert found(store, chunk_id)["dense"] == [chunk_id]
        assert peer.ask(f"query {chunk_id}")["dense"] == [chunk_id]
    assert store.count() == 8
    assert rebuilds == []


def test_threads_querying_while_the_client_is_reopened(pair):
    """A reopen waits for the other threads' reads on the old client: none of them fails."""
    import threading

    store, peer, _ = pair
    errors: list[BaseException] = []
    stop = threading.Event()

    def query() -> None:
        while not stop.is_set():
            try:
                found(store, "alpha")
            except BaseException as e:  # noqa: BLE001 - collected and asserted below
                errors.append(e)
                return

    threads = [threading.Thread(target=query) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(4):  # each foreign write makes the next query reopen the client
            assert peer.ask(f"write t{i}") == {"wrote": f"t{i}"}
            assert found(store, f"t{i}")["dense"] == [f"t{i}"]
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert errors == []
