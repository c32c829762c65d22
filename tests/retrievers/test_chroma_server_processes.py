"""Several OS processes against one Chroma server (a real ``chroma run``), each with its own lexical index.

The vectors live on the server; every process keeps its own lexical index (as app replicas on
different machines would) and follows the collection's change log on the server
(:class:`plait.retrievers.chroma_sync.ChangeFeed`). After any write (add, upsert with new text,
delete) by any of them, every process's next hybrid query returns the same results, and a
process that starts later fills its index from Chroma once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plait.retrievers.chroma import ChromaStore
from tests.retrievers.conftest import unique
from tests.retrievers.store_peer_child import Peer, found, hybrid, open_store, write


@pytest.fixture
def trio(chroma_server, tmp_path) -> Iterator[tuple[ChromaStore, Peer, Peer, str]]:
    host, port = chroma_server
    target, name = f"http://{host}:{port}", unique("feed")
    store = open_store(target, name, str(tmp_path / "here" / f"{name}.sqlite"))
    write(store, "alpha")
    peers = [Peer(target, name, tmp_path / who / f"{name}.sqlite") for who in ("one", "two")]
    yield store, peers[0], peers[1], target
    for peer in peers:
        peer.close()
    store.clear()


def agree(store: ChromaStore, *peers: Peer, query: str) -> list[str | None]:
    """The hybrid results of every process for ``query``, checked equal; returns them."""
    mine = hybrid(store, query)
    for peer in peers:
        assert peer.ask(f"hybrid {query}") == mine, f"a peer disagrees on {query!r}"
    return mine


def test_every_process_sees_every_write_at_its_next_query(trio):
    store, one, two, _ = trio
    assert one.ask("query alpha") == {"lexical": ["alpha"], "dense": ["alpha"]}  # filled from Chroma once
    assert one.ask("write beta") == {"wrote": "beta"}  # a peer writes: the others see it
    assert found(store, "beta") == {"lexical": ["beta"], "dense": ["beta"]}
    assert two.ask("query beta") == {"lexical": ["beta"], "dense": ["beta"]}
    write(store, "gamma", "zebra")  # this process writes
    assert one.ask("query zebra")["lexical"] == ["gamma"] and two.ask("query zebra")["lexical"] == ["gamma"]
    assert two.ask("write gamma okapi") == {"wrote": "gamma"}  # new text for an existing id
    for who in (one, two):
        assert who.ask("query zebra")["lexical"] == [] and who.ask("query okapi")["lexical"] == ["gamma"]
    assert found(store, "okapi")["lexical"] == ["gamma"] and found(store, "zebra")["lexical"] == []
    assert one.ask("delete alpha") == {"deleted": "alpha"}
    assert found(store, "alpha")["lexical"] == [] and two.ask("query alpha")["lexical"] == []
    assert sorted(agree(store, one, two, query="marker word chunk")) == ["beta", "gamma"]
    assert "gamma" in agree(store, one, two, query="okapi")


@pytest.mark.slow
def test_writers_in_turn_and_a_late_process_agree(trio, tmp_path):
    store, one, two, target = trio
    for i in range(4):  # writes from all three, interleaved, some replacing others' chunks
        write(store, f"c{i}", "shared")
        assert one.ask(f"write c{(i + 1) % 4} shared") == {"wrote": f"c{(i + 1) % 4}"}
        assert two.ask(f"delete c{(i + 2) % 4}") == {"deleted": f"c{(i + 2) % 4}"}
    expected = sorted(d.id for d in store.get())  # what the server holds
    assert expected == ["alpha", "c0", "c2", "c3"]
    for query in ("shared marker", "c3", "alpha marker"):
        agree(store, one, two, query=query)
    assert sorted(agree(store, one, two, query="shared")) == expected
    for lexical in (one.ask("query shared")["lexical"], found(store, "shared")["lexical"]):
        assert sorted(lexical) == ["c0", "c2", "c3"]  # equal BM25 scores: in any order
    late = Peer(target, store.collection_name, tmp_path / "late" / "late.sqlite")  # a new, empty local index
    try:
        assert sorted(late.ask("query shared")["lexical"]) == ["c0", "c2", "c3"]
        assert late.ask("hybrid shared") == hybrid(store, "shared")
    finally:
        late.close()
    assert two.ask("clear")["cleared"] == store.collection_name  # a clear empties every process's index
    assert found(store, "shared")["lexical"] == [] and one.ask("query shared")["lexical"] == []
    write(store, "after", "clear")  # and the collection made again is followed as before
    assert one.ask("query after") == {"lexical": ["after"], "dense": ["after"]}
    assert two.ask("query after") == {"lexical": ["after"], "dense": ["after"]}
