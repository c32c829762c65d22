"""Splitters: exact character spans, size limits (characters and real model tokens), overlap, Markdown sections."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.messages import Document
from plait.retrievers.splitters import (
    MarkdownHeaderSplitter,
    RecursiveCharacterSplitter,
    TextStream,
    TokenSplitter,
    markdown_sections,
)

TEXT = ("Retrieval augmented generation looks things up before answering. It cites its sources.\n\n"
        "Chunks must be small enough for the embedding model, yet large enough to carry meaning; "
        "overlap keeps sentences that straddle a boundary findable.\n\n"
        + " ".join(f"word{i}" for i in range(300)))


def check_spans(doc: Document, chunks: list[Document]) -> None:
    for i, c in enumerate(chunks):
        assert doc.content[c.metadata["start"]:c.metadata["end"]] == c.content
        assert c.metadata["chunk"] == i
        assert c.content == c.content.strip() and c.content


@given(st.text(alphabet=st.sampled_from(list("ab .\n,")), max_size=600),
       st.integers(5, 80), st.integers(0, 30))
@settings(max_examples=150, deadline=None)
def test_recursive_spans_exact_and_bounded(text, size, overlap):
    overlap = min(overlap, size - 1)
    doc = Document(content=text, metadata={"source": "s"})
    chunks = RecursiveCharacterSplitter(size, overlap).split_documents([doc])
    check_spans(doc, chunks)
    assert all(len(c.content) <= size for c in chunks)
    # every non-space character is covered by some chunk
    covered = set()
    for c in chunks:
        covered.update(range(c.metadata["start"], c.metadata["end"]))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


def test_recursive_prefers_paragraphs_and_overlaps():
    doc = Document(content=TEXT, metadata={"source": "t", "page": 2})
    chunks = RecursiveCharacterSplitter(200, 50).split_documents([doc])
    check_spans(doc, chunks)
    assert chunks[0].content.startswith("Retrieval") and chunks[0].content.endswith("sources.")
    assert all(c.metadata["page"] == 2 and c.metadata["source"] == "t" for c in chunks)
    words = [c for c in chunks if c.content.startswith("word")]
    assert len(words) > 3
    for a, b in zip(words, words[1:], strict=False):
        assert 0 < a.metadata["end"] - b.metadata["start"] <= 50  # consecutive chunks share text


def test_balance_cuts_the_last_two_chunks_evenly_and_keeps_the_rest():
    text = " ".join(f"w{i:03d}" for i in range(130))  # 649 characters: 200 + 200 + 200 + 49 greedily
    greedy = RecursiveCharacterSplitter(200, 0, balance=False).split_text(text)
    balanced = RecursiveCharacterSplitter(200, 0).split_text(text)
    assert [len(c) for c in greedy] == [199, 199, 199, 49]
    assert balanced[:2] == greedy[:2] and len(balanced) == 4  # same count; only the tail moved
    a, b = (len(c) for c in balanced[2:])
    assert abs(a - b) <= 5 and a + b + 1 == len(text) - sum(len(c) + 1 for c in greedy[:2])
    assert " ".join(balanced) == text
    assert RecursiveCharacterSplitter(200, 0).split_text(text[:149]) == [text[:149]]  # one chunk: untouched


def test_chunk_index_counts_per_source():
    docs = [Document(content="a " * 50, metadata={"source": "x", "page": 1}),
            Document(content="b " * 50, metadata={"source": "x", "page": 2}),
            Document(content="c " * 50, metadata={"source": "y"})]
    chunks = RecursiveCharacterSplitter(40, 0).split_documents(docs)
    by_source: dict[str, list[int]] = {}
    for c in chunks:
        by_source.setdefault(c.metadata["source"], []).append(c.metadata["chunk"])
    assert by_source["x"] == list(range(len(by_source["x"])))
    assert by_source["y"] == list(range(len(by_source["y"])))
    with pytest.raises(ValueError, match="chunk_overlap"):
        RecursiveCharacterSplitter(10, 10)


def test_token_splitter_never_exceeds_model_limit(embeddings):
    splitter = TokenSplitter(embeddings, chunk_overlap=16)
    hard = TEXT * 4 + " " + "x" * 3000 + " supercalifragilistic" * 40 + " 12345678901234567890" * 30
    doc = Document(content=hard, metadata={"source": "h"})
    chunks = splitter.split_documents([doc])
    check_spans(doc, chunks)
    counts = embeddings.count_tokens([c.content for c in chunks])  # with [CLS] and [SEP]
    assert max(counts) <= embeddings.max_tokens == 256
    assert sum(counts) > 256 * 3  # it did split
    assert max(counts) > 200  # and chunks are not needlessly small
    small = TokenSplitter(embeddings, chunk_size=64, chunk_overlap=8).split_text(TEXT)
    assert max(embeddings.count_tokens(small)) <= 64
    with pytest.raises(ValueError, match="exceeds the model's max"):
        TokenSplitter(embeddings, chunk_size=1000).split_text("x")


MD = """# Guide
Intro line.

## Install
```bash
# this is a comment, not a header
pip install plait
```

### Linux
Use apt.

## Usage
Call it.
"""


def test_markdown_sections_skip_code_fences():
    sections = markdown_sections(MD)
    assert [h for _, h in sections] == [["Guide"], ["Guide", "Install"], ["Guide", "Install", "Linux"],
                                        ["Guide", "Usage"]]
    assert "pip install" in MD[sections[1][0][0]:sections[1][0][1]]


def test_markdown_header_splitter_metadata_and_offsets():
    doc = Document(content=MD, metadata={"source": "g.md"})
    chunks = MarkdownHeaderSplitter(RecursiveCharacterSplitter(60, 0)).split_documents([doc])
    check_spans(doc, chunks)
    assert chunks[0].metadata["section"] == "Guide"
    linux = next(c for c in chunks if "apt" in c.content)
    assert linux.metadata["section"] == "Guide > Install > Linux"
    assert not any("Intro" in c.content and "Install" in c.content for c in chunks)  # cut at headers
    assert MarkdownHeaderSplitter().invoke(MD)[0].metadata["section"] == "Guide"  # a Runnable


def _heading_only(text: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def test_a_heading_never_makes_a_chunk_of_its_own_and_front_matter_is_skipped(embeddings):
    md = ("---\nhide-toc: true\ntitle: Auth\n---\n# Authentication\n\n## Overview\n\n"
          "Tokens are sent in the Authorization header.\n\n# Keys\n\n" + "Keys rotate every month. " * 40
          + "\n\n# Trailing heading\n")
    doc = Document(content=md, metadata={"source": "auth.md"})
    for inner in (RecursiveCharacterSplitter(120, 20), TokenSplitter(embeddings, chunk_size=48, chunk_overlap=8)):
        chunks = MarkdownHeaderSplitter(inner).split_documents([doc])
        check_spans(doc, chunks)
        assert not [c.content for c in chunks if _heading_only(c.content)]
        assert not any("hide-toc" in c.content or c.content.startswith("---") for c in chunks)
        first = chunks[0]
        assert first.content.startswith("# Authentication\n\n## Overview\n\nTokens")
        assert first.metadata["section"] == "Authentication > Overview"
        keys = [c for c in chunks if c.metadata.get("section") == "Keys"]
        assert len(keys) > 2 and keys[0].content.startswith("# Keys\n\nKeys rotate")  # heading kept with text
    tokens = TokenSplitter(embeddings, chunk_size=48, chunk_overlap=8)
    counts = embeddings.count_tokens([c.content for c in MarkdownHeaderSplitter(tokens).split_documents([doc])])
    assert max(counts) <= 48
    assert [c.content for c in MarkdownHeaderSplitter().invoke("# Only a title\n")] == ["# Only a title"]
    assert markdown_sections("---\na: 1\n---\n# T\nx\n")[0][0][0] == len("---\na: 1\n---\n")
    assert markdown_sections("---\nnot closed\n# T\nx\n")[0][0][0] == 0  # no closing line: not front matter


def test_long_texts_split_in_windows_stream_and_resume_to_the_same_chunks():
    import random

    rng = random.Random(0)
    text = " ".join(rng.choice(["alpha", "beta.", "gamma,", "delta", "eps\n", "zeta\n\n"]) for _ in range(6000))
    splitter = RecursiveCharacterSplitter(300, 50)
    splitter.window = 3000
    doc = Document(content=text, metadata={"source": "x"})
    chunks = splitter.split_documents([doc])
    check_spans(doc, chunks)
    assert len(text) > 10 * splitter.window and all(len(c.content) <= 300 for c in chunks)
    covered = set()
    for c in chunks:
        covered.update(range(c.metadata["start"], c.metadata["end"]))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())

    def blocks(start: int):
        for i in range(start, len(text), 777):
            yield text[i:i + 777]

    streamed = list(splitter.stream_chunks([TextStream({"source": "x"}, blocks)]))
    assert [d.model_dump() for d, _ in streamed] == [c.model_dump() for c in chunks]
    for k in (1, len(streamed) // 2, len(streamed) - 1):
        token = streamed[k][1]
        assert token is not None and token[0] <= chunks[k].metadata["start"]
        again = [d for d, _ in splitter.stream_chunks([TextStream({"source": "x"}, blocks)], resume=token)]
        assert [d.model_dump() for d in again] == [c.model_dump() for c in chunks[token[1]:]]


def test_remote_embeddings_split_by_the_bundled_tokenizer():
    # OpenAIEmbeddings has no tokenizer plait can see: ingesting with it used to fail with
    # AttributeError; it now splits as the default local model does (nothing is sent anywhere).
    from plait.remote.openai_embeddings import OpenAIEmbeddings

    remote = OpenAIEmbeddings("text-embedding-3-small", base_url="http://127.0.0.1:9/v1", api_key="unused")
    docs = [Document(content="Cats purr when they are happy. " * 200, metadata={"source": "cats.txt"})]
    got = TokenSplitter(remote, chunk_overlap=32).split_documents(docs)
    want = TokenSplitter(chunk_overlap=32).split_documents(docs)
    assert len(got) > 1 and [d.content for d in got] == [d.content for d in want]
