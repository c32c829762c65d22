"""``plait serve`` argument handling (the serving itself is tested in test_lifecycle through the CLI)."""

from __future__ import annotations

import pytest

from plait.cli import main
from plait.commands import serve as serve_cmd


def test_non_loopback_host_needs_an_api_key(capsys, monkeypatch):
    monkeypatch.delenv("PLAIT_API_KEY", raising=False)
    assert main(["serve", "tests.serve.apps:chat", "--host", "0.0.0.0"]) == 2
    assert "--api-key" in capsys.readouterr().err


def test_target_is_required_and_exclusive():
    with pytest.raises(SystemExit, match="MODULE:OBJECT"):
        main(["serve"])
    with pytest.raises(SystemExit, match="MODULE:OBJECT"):
        main(["serve", "tests.serve.apps:chat", "--model", "local"])


@pytest.mark.parametrize("spec, message", [
    ("tests.serve.apps", "not MODULE:OBJECT"),
    ("tests.serve.nowhere:chat", "cannot import"),
    ("tests.serve.apps:missing", "no attribute"),
])
def test_bad_targets_say_what_is_wrong(spec, message):
    with pytest.raises(SystemExit, match=message):
        serve_cmd.load_target(spec)


def test_target_objects_and_factories_load():
    from plait.fake import FakeChatModel

    assert isinstance(serve_cmd.load_target("tests.serve.apps:chat"), FakeChatModel)
    assert isinstance(serve_cmd.load_target("tests.serve.apps:slow_chat"), FakeChatModel)  # a factory, called


def test_unknown_model_spec_is_an_error(capsys):
    assert main(["serve", "--model", "nonsense:x"]) == 2  # checked before anything loads (one error line)
    assert "unknown chat model 'nonsense:x'" in capsys.readouterr().err


def test_rag_on_empty_collection_says_to_ingest(tmp_path):
    pytest.importorskip("chromadb")
    with pytest.raises(SystemExit, match="plait ingest"):
        serve_cmd.rag_chain("empty-one", "local", str(tmp_path / "store"))


@pytest.mark.slow
@pytest.mark.integration
def test_rag_serves_indexed_documents_with_sources(tmp_path, serve, monkeypatch):
    """``plait serve --rag``'s chain over a real store, answering through a plait-served model."""
    import openai

    from plait.fake import FakeChatModel
    from plait.messages import Document
    from plait.retrievers.chroma import ChromaStore

    store = ChromaStore("notes", path=tmp_path / "store")
    store.upsert([Document(content="The plait server speaks the OpenAI chat completions protocol.",
                           metadata={"source": "notes/server.md"}, id="a"),
                  Document(content="Bananas are yellow fruit rich in potassium.",
                           metadata={"source": "notes/fruit.md"}, id="b")])
    upstream = serve(FakeChatModel(["It speaks the OpenAI protocol [1]."]), name="upstream")
    monkeypatch.setenv("OPENAI_BASE_URL", upstream.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    chain = serve_cmd.rag_chain("notes", "openai:upstream", str(tmp_path / "store"))
    server = serve(chain, name="notes")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    r = client.chat.completions.create(model="notes", messages=[
        {"role": "user", "content": "Which protocol does the plait server speak?"}])
    assert r.choices[0].message.content.startswith("It speaks the OpenAI protocol")
    assert r.model_extra["citations"][0]["source"] == "notes/server.md"
