"""Every example in examples/ runs, with the real local model (loaded once for the session)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from tests.app_support import ROOT, local_model  # noqa: F401

pytestmark = pytest.mark.integration

MINE = ["quickstart", "rag_folder", "chatbot_memory", "agent_tools", "extraction", "openai_server",
        "langchain_interop", "langgraph_agent"]


def load(name):
    return importlib.import_module(f"examples.{name}")


def test_every_example_is_tested():
    on_disk = {p.stem for p in (ROOT / "examples").glob("*.py") if not p.stem.startswith("_")}
    tested = set(MINE) | {"text_to_image"}  # text_to_image is tested with the image model's tests
    assert on_disk <= tested, f"untested examples: {sorted(on_disk - tested)}"


@pytest.mark.slow
def test_quickstart_runs_as_a_script():
    """The script entry point in a fresh process (slow: imports torch and loads the model again)."""
    env = {**os.environ, "PLAIT_EXAMPLE_MODEL": "local"}
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 3 and lines[1].startswith("- ") and lines[2].startswith("- ")


def test_quickstart(local_model, capsys):  # noqa: F811
    answer = load("quickstart").main(local_model)
    assert answer.strip() and answer.strip() in capsys.readouterr().out


def test_rag_folder(local_model, capsys):  # noqa: F811
    module = load("rag_folder")
    result = module.main(local_model)
    assert result.sources and all("docs" in s.source for s in result.sources)
    assert "collection 'docs':" in capsys.readouterr().out
    # a user's folder gets its own collection, named after it (not a shared 'example-rag')
    assert module.collection_for("/home/me/my notes") == "my-notes"
    assert module.collection_for("/tmp/x") == "folder-x" and module.collection_for("/") == "folder-root"


def test_chatbot_memory(local_model, tmp_path, capsys):  # noqa: F811
    from plait.chains.history import SQLiteChatHistory

    replies = load("chatbot_memory").main(local_model, session="test-session")
    assert len(replies) == 2 and all(r.strip() for r in replies)
    stored = SQLiteChatHistory().messages("test-session")
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[2].content == "What is my name?"
    out = capsys.readouterr().out
    assert "Ada" in replies[1] or ("did not use them" in out and "--model openai:MODEL" in out)


def test_agent_tools(local_model, capsys):  # noqa: F811
    result = load("agent_tools").main(local_model)
    out = capsys.readouterr().out
    # the bundled model's first step is held to a tool call by the grammar: a real call, a real result
    assert result.tool_calls and result.tool_calls[0].name in ("multiply", "word_count")
    assert "user> What is 12 times 7?" in out and "  calls " in out and "  result: " in out
    assert "--model openai:MODEL" in out  # it says that the rest needs a bigger model
    assert result.messages[0].role == "system" and "multiply" not in result.messages[0].content


def test_extraction(local_model, capsys):  # noqa: F811
    person = load("extraction").main(local_model)  # constrained decoding: the schema is always filled
    assert person is not None and person.name == "Marie Curie" and person.age == 42
    assert "extracted:" in capsys.readouterr().out


def test_openai_server(local_model, capsys, monkeypatch):  # noqa: F811
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    answer = load("openai_server").main(local_model)
    out = capsys.readouterr().out
    assert "serves" in out and answer.strip()


def test_langchain_interop(local_model, capsys):  # noqa: F811
    text, result = load("langchain_interop").main(local_model)
    assert text.strip()
    assert result.sources[0].source == "landmarks.txt" and result.sources[0].end == 52


def test_langgraph_agent(local_model, capsys):  # noqa: F811
    """The real local model in the graph; tests/interop/test_langgraph.py checks the wiring with a FakeChatModel."""
    pytest.importorskip("langgraph")
    from langchain_core.messages import AIMessage, ToolMessage

    from plait.interop.langchain import PlaitChatModel

    state = load("langgraph_agent").main(PlaitChatModel(model=local_model, temperature=0, max_tokens=60))
    agent, tools, answer = state["messages"][1:]
    assert isinstance(agent, AIMessage) and agent.tool_calls[0]["name"] == "search_notes"  # forced: tool_choice="any"
    assert isinstance(tools, ToolMessage) and tools.content.startswith("- ")  # the retriever's notes
    assert isinstance(answer, AIMessage) and answer.content.strip() and not answer.tool_calls
    assert "answer > " in capsys.readouterr().out
