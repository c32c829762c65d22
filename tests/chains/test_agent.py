from __future__ import annotations

import pytest

from plait.chains.agent import Agent, retriever_tool
from plait.fake import FakeChatModel, tool_call
from plait.messages import Document
from plait.runnable import Lambda
from plait.tracing import Tracer, tracing


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first number.
        b: the second number.
    """
    return a + b


def divide(a: float, b: float) -> float:
    """Divide a by b."""
    return a / b


class Recorder(Tracer):
    def __init__(self):
        self.names = []

    def on_start(self, run):
        self.names.append(run.name)


def test_native_tool_calls_run_and_feed_back():
    model = FakeChatModel([tool_call("add", {"a": 2, "b": 3}), "2 + 3 = 5."])
    rec = Recorder()
    with tracing(rec):
        result = Agent(model, [add, divide]).invoke("What is 2 + 3?")
    assert result.output == "2 + 3 = 5." and result.steps == 2 and result.finish_reason == "stop"
    tool_msg = result.messages[-2]
    assert tool_msg.role == "tool" and tool_msg.content == "5"
    sent = model.calls[1]
    assert sent[-1].role == "tool" and sent[-1].content == "5"
    assert rec.names == ["agent", "step 1", "tool add", "step 2"]


def test_tool_errors_unknown_tools_and_bad_arguments_go_back_to_the_model():
    model = FakeChatModel([tool_call("divide", {"a": 1, "b": 0}), tool_call("sqrt", {"x": 4}),
                           tool_call("add", {"a": "two"}), "Sorry, I could not compute it."])
    result = Agent(model, [add, divide]).invoke("1/0?")
    errors = [m.content for m in result.messages if m.role == "tool"]
    assert errors[0].startswith("Error: ZeroDivisionError")
    assert "no tool named 'sqrt'" in errors[1] and "add, divide" in errors[1]
    assert errors[2].startswith("Error: ToolArgumentsError") and "b" in errors[2]
    assert result.output == "Sorry, I could not compute it." and result.steps == 4


def test_max_steps_stops_a_loop():
    model = FakeChatModel([tool_call("add", {"a": 1, "b": 1})])
    result = Agent(model, [add], max_steps=3).invoke("loop forever")
    assert result.finish_reason == "max_steps" and result.steps == 3 and len(result.tool_calls) == 3
    assert len(model.calls) == 3
    with pytest.raises(ValueError, match="max_steps"):
        Agent(model, [add], max_steps=0)


class PromptedModel(FakeChatModel):
    """A text-only model: tools are described in its prompt and its JSON replies parsed (the local path)."""

    supports_tools = False


def test_prompted_json_tool_calls():
    model = PromptedModel(['{"tool": "add", "arguments": {"a": 40, "b": 2}}', "The answer is 42."])
    result = Agent(model, [add]).invoke("What is 40 + 2?")
    assert result.output == "The answer is 42." and result.tool_calls[0].name == "add"
    first_prompt = model.calls[0][0].content
    assert '"name": "add"' in first_prompt and '{"tool"' in first_prompt  # tools described in the prompt
    assert "42" in model.calls[1][-1].content  # the tool result went back as text


def test_stream_yields_calls_results_and_answer_tokens():
    model = FakeChatModel([tool_call("add", {"a": 1, "b": 2}), "It is three."])
    events = list(Agent(model, [add]).stream("1+2?"))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["tool_call", "tool_result"] and kinds[-1] == "final"
    assert [e.content for e in events if e.type == "token"] == ["It", " is", " three."]
    assert events[-1].result.output == "It is three."


def test_retriever_as_a_tool():
    docs = [Document(content="Chroma keeps vectors.", metadata={"source": "store.md"})]
    search = retriever_tool(Lambda(lambda q: docs if "store" in q else []))
    assert search.invoke({"query": "vector store"}) == "[1] (store.md) Chroma keeps vectors."
    assert search.invoke({"query": "nothing"}) == "No documents found."
    model = FakeChatModel([tool_call("search_documents", {"query": "store"}), "Chroma [1]."])
    result = Agent(model, [search, add]).invoke("Where are vectors kept?")
    assert "store.md" in result.messages[-2].content


async def test_async_invoke():
    model = FakeChatModel([tool_call("add", {"a": 1, "b": 1}), "two"])
    result = await Agent(model, [add]).ainvoke("1+1")
    assert result.output == "two"
