"""The LangGraph example's graph, composed with a scripted plait model (FakeChatModel) and a real
retriever (Chroma + the bundled MiniLM): checks the wiring exactly. The same example runs on the
real local model in tests/test_examples.py."""

from __future__ import annotations

import pytest

pytest.importorskip("langgraph")

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402

from examples.langgraph_agent import main  # noqa: E402
from plait.fake import FakeChatModel, tool_call  # noqa: E402
from plait.interop.langchain import PlaitChatModel  # noqa: E402

pytestmark = pytest.mark.integration


def test_graph_runs_agent_then_tool_then_answer(capsys):
    plait = FakeChatModel([tool_call("search_notes", {"question": "vacation days"}, id="call_1"),
                           "You get 25 vacation days per year."])
    state = main(PlaitChatModel(model=plait), question="How many vacation days do I get?")
    kinds = [type(m) for m in state["messages"]]
    assert kinds == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    found = state["messages"][2]
    assert found.tool_call_id == "call_1" and "25 vacation days" in found.content
    assert state["messages"][3].content == "You get 25 vacation days per year."
    # the answering call saw the search results and the question
    answer_prompt = plait.calls[1]
    assert "25 vacation days" in answer_prompt[-1].content and "Question: How many" in answer_prompt[-1].content
    out = capsys.readouterr().out
    assert "calls search_notes({'question': 'vacation days'})" in out and "answer > You get 25" in out
