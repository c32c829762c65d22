from __future__ import annotations

from plait.chains.multi_query import MultiQueryRetriever, parse_variants, reciprocal_rank_fusion
from plait.fake import FakeChatModel
from plait.messages import Document


def d(i):
    return Document(content=f"doc {i}", id=str(i))


def test_rrf_rewards_documents_found_by_several_queries():
    fused = reciprocal_rank_fusion([[d(1), d(2), d(3)], [d(3), d(4)], [d(3), d(2)]], rrf_k=60)
    assert [x.id for x in fused][:2] == ["3", "2"]
    assert abs(fused[0].score - (1 / 63 + 1 / 61 + 1 / 61)) < 1e-12
    assert len(reciprocal_rank_fusion([[d(1), d(2)]], k=1)) == 1


def test_parse_variants_cleans_numbering():
    assert parse_variants("1. alpha\n- beta\n\n\"gamma\"\nQ\nalpha", 5, "q") == ["alpha", "beta", "gamma"]


def test_variants_are_searched_and_fused():
    index = {"stream": [d(1), d(2)], "tokens": [d(2), d(3)], "chunks": [d(2), d(4)]}
    seen = []

    def search(q):
        seen.append(q)
        return [doc for word, docs in index.items() if word in q for doc in docs]

    from plait.runnable import Lambda

    model = FakeChatModel(["1. how are tokens sent\n2. chunks of output"])
    r = MultiQueryRetriever(Lambda(search), model, n_variants=2, k=3)
    out = r.invoke("how to stream")
    assert sorted(seen) == sorted(["how to stream", "how are tokens sent", "chunks of output"])
    assert out[0].id == "2" and len(out) == 3


async def test_async_variants_and_fusion():
    from plait.runnable import Lambda

    model = FakeChatModel(["other words"])
    r = MultiQueryRetriever(Lambda(lambda q: [d(len(q))]), model, n_variants=1, k=5)
    out = await r.ainvoke("query")
    assert sorted(x.id for x in out) == ["11", "5"]
