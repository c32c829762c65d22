from __future__ import annotations

import pytest

from plait.messages import (
    AssistantChunk,
    AssistantMessage,
    ChatPromptValue,
    Document,
    SystemMessage,
    ToolCallChunk,
    ToolMessage,
    Usage,
    UserMessage,
    message_from,
    to_messages,
)


def test_chunks_add_up_to_the_message():
    chunks = [AssistantChunk(content="Hel", model="m"), AssistantChunk(content="lo"),
              AssistantChunk(finish_reason="stop", usage=Usage(completion_tokens=2, total_tokens=2))]
    total = chunks[0] + chunks[1] + chunks[2]
    msg = total.to_message()
    assert msg == AssistantMessage(content="Hello", model="m", finish_reason="stop",
                                   usage=Usage(completion_tokens=2, total_tokens=2))


def test_streamed_tool_call_arguments_are_joined_by_index():
    parts = [
        AssistantChunk(tool_call_chunks=[ToolCallChunk(index=0, id="c1", name="add", arguments='{"a": ')]),
        AssistantChunk(tool_call_chunks=[ToolCallChunk(index=0, arguments="1}"),
                                         ToolCallChunk(index=1, id="c2", name="neg", arguments="{}")]),
    ]
    msg = (parts[0] + parts[1]).to_message()
    assert [(c.id, c.name, c.arguments) for c in msg.tool_calls] == [("c1", "add", {"a": 1}), ("c2", "neg", {})]


def test_bad_tool_call_json_names_the_tool():
    chunk = AssistantChunk(tool_call_chunks=[ToolCallChunk(index=0, id="x", name="add", arguments='{"a":')])
    with pytest.raises(ValueError, match="'add'"):
        chunk.to_message()


def test_message_from_openai_dicts_and_tuples():
    assert message_from(("system", "be brief")) == SystemMessage(content="be brief")
    assert message_from({"role": "user", "content": "hi"}) == UserMessage(content="hi")
    tool = message_from({"role": "tool", "content": "3", "tool_call_id": "c1"})
    assert isinstance(tool, ToolMessage) and tool.tool_call_id == "c1"
    ai = message_from({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}]})
    assert ai.tool_calls[0].arguments == {"a": 1} and ai.content == ""
    with pytest.raises(ValueError, match="Unknown message role 'robot'"):
        message_from({"role": "robot", "content": "x"})


def test_to_messages_accepts_what_a_chat_model_accepts():
    assert to_messages("hi") == [UserMessage(content="hi")]
    value = ChatPromptValue(messages=[SystemMessage(content="s"), UserMessage(content="u")])
    assert to_messages(value) == value.messages
    with pytest.raises(TypeError, match="not int"):
        to_messages(3)


def test_messages_round_trip_through_json():
    msg = AssistantMessage(content="x", tool_calls=[{"id": "1", "name": "f", "arguments": {"a": [1]}}])
    assert AssistantMessage.model_validate_json(msg.model_dump_json()) == msg
    doc = Document(content="text", metadata={"source": "a.md", "page": 2}, id="a:0", score=0.5)
    assert Document.model_validate_json(doc.model_dump_json()) == doc and doc.source == "a.md"


def test_extra_fields_are_rejected():
    with pytest.raises(ValueError):
        UserMessage(content="x", bogus=1)


def test_add_chunks_refuses_to_drop_what_it_added():
    import pytest

    from plait.messages import add_chunks

    assert add_chunks("ab", "c") == "abc"
    assert add_chunks({"a": "x"}, {"a": "y", "b": 1}) == {"a": "xy", "b": 1}
    assert add_chunks(1, 2) == 2  # values that are not chunks: the last one wins
    with pytest.raises(TypeError, match="Cannot add a int chunk to a stream of str"):
        add_chunks("abc", 5)
