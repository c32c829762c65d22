"""The commands people expect (``llm`` habits) through the real ``plait`` command line."""

from __future__ import annotations

import json
import stat

import pytest

from tests.cli.conftest import assert_clean_error, plait


def test_version_and_help(tmp_path):
    r = plait(tmp_path, "--version")
    assert r.code == 0 and r.out.startswith("plait ")
    r = plait(tmp_path, "--help")
    for command in ("collections", "index", "search", "models", "config", "keys", "logs"):
        assert command in r.out


def test_ingest_is_quiet_and_reports_skipped_files(notes):
    r = notes.ingest
    assert r.code == 0, r.text
    assert "2 added" in r.out and "2 skipped" in r.out and "broken.pdf" in r.out and "blob.bin" in r.out
    for noise in ("invalid pdf header", "Loading weights", "loss_type", "\x1b[", "files:"):
        assert noise not in r.err, r.err  # no library chatter, no progress bar off a terminal


def test_collections_lists_counts_and_sources(notes):
    r = plait(notes.home, "collections")
    assert r.code == 0 and "notes" in r.out and "2 chunks" in r.out and "2 files" in r.out, r.text
    [row] = json.loads(plait(notes.home, "collections", "--json").out)
    assert row["name"] == "notes" and row["chunks"] == 2 and row["files"] == 2
    assert sorted(s.rsplit("/", 1)[-1] for s in row["sources"]) == ["bees.md", "tea.txt"]
    shown = json.loads(plait(notes.home, "index", "show", "notes", "--json").out)
    assert shown["chunks"] == 2 and [s["chunks"] for s in shown["sources"]] == [1, 1]


def test_search_retrieves_with_scores_and_no_model(notes):
    r = plait(notes.home, "search", "How do bees point to flowers?", "--collection", "notes", "-k", "2", "--json")
    assert r.code == 0, r.text
    hits = json.loads(r.out)
    assert [h["rank"] for h in hits] == [1, 2]
    assert hits[0]["source"].endswith("bees.md") and "waggle dance" in hits[0]["content"]
    assert all(isinstance(h["score"], float) for h in hits) and hits[0]["score"] >= hits[1]["score"]
    r = plait(notes.home, "search", "green tea temperature", "--collection", "notes", "--kind", "bm25", "-k", "1")
    assert r.code == 0 and r.out.startswith("[1] ") and "tea.txt" in r.out and "80 degrees" in r.out, r.text


def test_index_remove_and_drop(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("Alpha is the first letter of the Greek alphabet.\n")
    (folder / "b.md").write_text("Beta is the second letter of the Greek alphabet.\n")
    home = tmp_path / "home"
    assert plait(home, "ingest", str(folder), "--collection", "scratch").code == 0
    assert_clean_error(plait(home, "index", "remove", "scratch", str(folder / "c.md")), "not in 'scratch'", "c.md")
    r = plait(home, "index", "remove", "scratch", str(folder / "a.md"))
    assert r.code == 0 and "removed 1 files (1 chunks)" in r.out, r.text
    shown = json.loads(plait(home, "index", "show", "scratch", "--json").out)
    assert [s["source"].rsplit("/", 1)[-1] for s in shown["sources"]] == ["b.md"] and shown["chunks"] == 1
    r = plait(home, "index", "drop", "scratch")
    assert r.code == 0 and "dropped 'scratch' (1 chunks)" in r.out, r.text
    assert json.loads(plait(home, "collections", "--json").out) == []
    again = plait(home, "ingest", str(folder), "--collection", "scratch", "--json")  # the record was dropped too
    assert again.code == 0 and json.loads(again.out)["files_added"] == 2, again.text


def test_models_says_what_specs_resolve_to(tmp_path):
    assert plait(tmp_path, "config", "set", "aliases.fast", "openai:gpt-4o-mini").code == 0
    info = json.loads(plait(tmp_path, "models", "--json").out)
    assert info["default"] == "local" and info["chat"]["local"]["installed"]
    assert info["chat"]["local"]["path"].endswith(".gguf")
    assert info["aliases"] == {"fast": "openai:gpt-4o-mini"}
    assert info["embeddings"]["installed"] and info["image"]["installed"]
    r = plait(tmp_path, "models")
    assert "fast -> openai:gpt-4o-mini" in r.out and "openai:MODEL" in r.out and "transformers" in r.out


def test_config_default_model_aliases_and_options(tmp_path):
    assert plait(tmp_path, "config", "set", "aliases.fast", "openai:gpt-4o-mini").code == 0
    assert plait(tmp_path, "config", "set", "model", "fast").code == 0
    assert plait(tmp_path, "config", "set", "options.openai:gpt-4o-mini.temperature", "0.2").code == 0
    assert plait(tmp_path, "config", "set", "options.local.stop", "END").code == 0
    assert plait(tmp_path, "config", "get", "model").out.strip() == "fast"
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved == {"aliases": {"fast": "openai:gpt-4o-mini"}, "model": "fast",
                     "options": {"local": {"stop": ["END"]}, "openai:gpt-4o-mini": {"temperature": 0.2}}}
    # the default model goes through the alias: no key for api.openai.com, so ask stops before anything loads
    assert_clean_error(plait(tmp_path, "ask", "What is plait?"), "--api-key")
    assert plait(tmp_path, "config", "unset", "options.local.stop").code == 0
    assert "local" not in json.loads(plait(tmp_path, "config").out)["options"]
    assert_clean_error(plait(tmp_path, "config", "unset", "options.local.stop"), "was not set")


def test_config_options_reach_the_model_and_flags_win(tmp_path, monkeypatch):
    import argparse

    from plait import config
    from plait.commands._answers import generation_options

    monkeypatch.setenv("PLAIT_HOME", str(tmp_path))
    config.set_value("options.local.temperature", 0.7)
    config.set_value("options.local.max_tokens", 50)
    args = argparse.Namespace(model="local", max_tokens=None)
    assert generation_options(args)["temperature"] == 0.7 and generation_options(args)["max_tokens"] == 50
    args.max_tokens = 9
    assert generation_options(args)["max_tokens"] == 9


def test_keys_are_stored_privately_and_never_printed(tmp_path):
    r = plait(tmp_path, "keys", "set", "openai", input="sk-secret-123\n")
    assert r.code == 0 and "sk-secret" not in r.text, r.text
    path = tmp_path / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"openai": "sk-secret-123"}
    r = plait(tmp_path, "keys", "list")
    assert r.out.split() == ["openai"] and "sk-secret" not in r.text
    assert_clean_error(plait(tmp_path, "keys", "set", "openai", input="\n"), "no key given", code=2)
    assert plait(tmp_path, "keys", "remove", "openai").code == 0
    assert plait(tmp_path, "keys", "list", "--json").out.strip() == "[]"


def test_no_log_flag_and_config_switch(tmp_path, monkeypatch):
    import argparse

    from plait.commands._answers import should_log

    monkeypatch.setenv("PLAIT_HOME", str(tmp_path))
    assert should_log(argparse.Namespace(no_log=False))
    assert not should_log(argparse.Namespace(no_log=True))
    assert plait(tmp_path, "logs", "off").code == 0  # the config switch
    assert not should_log(argparse.Namespace(no_log=False))
    assert "logging is off" in plait(tmp_path, "logs").out
    assert plait(tmp_path, "logs", "on").code == 0
    assert should_log(argparse.Namespace(no_log=False))


@pytest.fixture
def served_model():
    """A plait server on 127.0.0.1 answering as ``fake``, wanting the API key ``sk-test``."""
    from plait.fake import FakeChatModel
    from plait.serve import ServerThread, create_app

    server = ServerThread(create_app(FakeChatModel(["Honey bees do a waggle dance [1]."]), api_key="sk-test",
                                     name="fake")).start()
    yield server
    server.stop()


@pytest.mark.integration
def test_ask_and_chat_answer_through_a_key_alias_and_log(notes, served_model):
    """A real answer without loading a chat model: the key comes from ``plait keys``, the model from an alias."""
    home = notes.home
    assert plait(home, "keys", "set", "openai", input="sk-test\n").code == 0
    assert plait(home, "config", "set", "aliases.served", "openai:fake").code == 0
    url = served_model.url + "/v1"
    question = "How do honey bees show the direction of flowers?"
    r = plait(home, "ask", question, "--model", "served", "--base-url", url, "--collection", "notes")
    assert r.code == 0, r.text
    assert "Honey bees do a waggle dance [1]." in r.out and "bees.md" in r.out
    r = plait(home, "chat", "--model", "served", "--base-url", url, "--collection", "notes", "--session", "s1",
              input=f"{question}\n/quit\n")
    assert r.code == 0 and "plait> Honey bees do a waggle dance" in r.out, r.text

    entries = json.loads(plait(home, "logs", "-n", "0", "--json").out)
    assert [(e["command"], e["model"], e["session"]) for e in entries] == [("ask", "openai:fake", None),
                                                                          ("chat", "openai:fake", "s1")]
    assert entries[0]["prompt"] == question and entries[0]["collection"] == "notes"
    assert entries[0]["answer"] == "Honey bees do a waggle dance [1]."
    assert entries[0]["sources"][0]["source"].endswith("bees.md") and entries[0]["sources"][0]["cited"]
    r = plait(home, "logs", "-n", "1")
    assert "## Prompt" in r.out and question in r.out and " chat " in r.out.splitlines()[0], r.out

    plait(home, "keys", "remove", "openai")  # a wrong key: the server's refusal is one line, naming the flag
    r = plait(home, "ask", question, "--model", "served", "--base-url", url, "--collection", "notes",
              "--api-key", "sk-wrong", "--json")
    assert_clean_error(r, "401", "--api-key")
    assert len(json.loads(plait(home, "logs", "-n", "0", "--json").out)) == 2  # a failed answer is not logged


@pytest.mark.slow
@pytest.mark.integration
def test_first_local_answer_is_quiet(tmp_path):
    """A fresh data dir: the embedding model and the bundled chat model load (and the GGUF converts) silently."""
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "bees.md").write_text("# Bees\n\nHoney bees dance to show where flowers are.\n")
    home = tmp_path / "home"
    assert plait(home, "ingest", str(tmp_path / "notes"), "--collection", "bees").code == 0
    r = plait(home, "ask", "What do honey bees do?", "--collection", "bees", "--max-tokens", "8")
    assert r.code == 0 and "Sources" in r.out, r.text
    for noise in ("Loading weights", "Converting", "loss_type", "\r", "\x1b["):
        assert noise not in r.err, r.err
