"""How ``plait ask`` and ``plait chat`` show citations: which passages, and how they were chosen."""

from __future__ import annotations

import io

from plait.chains.rag import RAGChain
from plait.commands._common import citation_note, print_sources
from plait.fake import FakeChatModel
from plait.messages import Document

DOCS = [Document(content="Authentication uses a token read from the keyring.", id="a", metadata={"source": "auth.md"}),
        Document(content="Repeatable installs pin every version in a lock file.", id="b",
                 metadata={"source": "repeatable-installs.md"}),
        Document(content="Caching keeps wheels in the cache folder.", id="c", metadata={"source": "caching.md"})]


def shown(answer_text: str) -> tuple[str, str]:
    result = RAGChain(lambda q: DOCS, FakeChatModel([answer_text])).invoke("q")
    out = io.StringIO()
    print_sources(result, out)
    return result.answer, out.getvalue()


def test_model_markers_are_shown_as_cited_and_invalid_ones_flagged():
    answer, text = shown("Use a token from the keyring [1]. [4]")
    assert "[4]" not in answer and " *[1] auth.md" in text and "  [2] repeatable-installs.md" in text
    assert "(removed [4] from the answer: only 3 passages were retrieved)" in text
    assert "wrote no" not in text and "cited no" not in text  # the model did cite [1]


def test_inferred_citation_says_how_it_was_chosen():
    answer, text = shown("Repeatable installs pin every version in a lock file.")
    assert answer.endswith("[2]") and " *[2] repeatable-installs.md" in text
    assert "(the model cited no passage; plait added [2]: it shares 7 of the answer's 7 content words, the most of " \
           "the 3 passages)" in text


def test_no_citation_at_all_is_said_once():
    answer, text = shown("[5] Nothing here matches.")
    assert "[5]" not in answer and "*" not in text.split("Sources")[1].replace("(* cited)", "")
    note = citation_note(RAGChain(lambda q: DOCS, FakeChatModel(["[5] Nothing here matches."])).invoke("q"))
    assert note == ("the model's only marker [5] named no passage (there are 3; removed from the answer); no passage "
                    "shares enough of the answer's words to cite one")
