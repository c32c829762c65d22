from __future__ import annotations

import pytest

from plait import (
    ChatPromptTemplate,
    FewShotChatPromptTemplate,
    FewShotPromptTemplate,
    MessagesPlaceholder,
    MissingVariableError,
    PromptTemplate,
)
from plait.messages import AssistantMessage, SystemMessage, UserMessage


def test_prompt_template_formats_and_lists_variables():
    p = PromptTemplate("Hi {name}, about {topic}: {{literal}}")
    assert p.input_variables == ["name", "topic"]
    assert p.invoke({"name": "Ann", "topic": "x"}).to_string() == "Hi Ann, about x: {literal}"


def test_missing_variable_names_variable_and_template():
    p = PromptTemplate("Answer {question} using {context}")
    with pytest.raises(MissingVariableError) as err:
        p.invoke({"question": "q"})
    assert "'context'" in str(err.value) and "Answer {question} using {context}" in str(err.value)


def test_missing_variable_in_chat_template():
    p = ChatPromptTemplate.from_messages([("system", "Lang: {lang}"), ("user", "{q}")])
    with pytest.raises(MissingVariableError, match="'lang'"):
        p.invoke({"q": "hi"})


def test_single_variable_prompt_takes_a_bare_value():
    assert PromptTemplate("Q: {q}").invoke("why").to_string() == "Q: why"
    with pytest.raises(TypeError, match=r"\['a', 'b'\]"):
        PromptTemplate("{a}{b}").invoke("x")


def test_partial_variables_values_and_callables():
    p = PromptTemplate("{greeting} {name}").partial(greeting=lambda: "Hello")
    assert p.input_variables == ["name"]
    assert p.invoke({"name": "Bo"}).text == "Hello Bo"
    c = ChatPromptTemplate.from_messages([("system", "{style}"), ("user", "{q}")]).partial(style="terse")
    assert c.input_variables == ["q"]
    assert c.invoke({"q": "x"}).messages[0] == SystemMessage(content="terse")


def test_messages_placeholder_for_history():
    p = ChatPromptTemplate.from_messages([
        ("system", "sys"), MessagesPlaceholder("history"), ("user", "{question}")])
    out = p.invoke({"history": [("user", "a"), AssistantMessage(content="b")], "question": "c"}).messages
    assert [(m.role, m.content) for m in out] == [("system", "sys"), ("user", "a"), ("assistant", "b"), ("user", "c")]
    with pytest.raises(MissingVariableError, match="'history'"):
        p.invoke({"question": "c"})
    optional = ChatPromptTemplate.from_messages([MessagesPlaceholder("h", optional=True), ("user", "{q}")])
    assert optional.invoke({"q": "x"}).messages == [UserMessage(content="x")]


def test_few_shot_text_prompt():
    p = FewShotPromptTemplate(examples=[{"q": "2+2", "a": "4"}, {"q": "3+3", "a": "6"}],
                              example_prompt=PromptTemplate("Q: {q}\nA: {a}"),
                              prefix="Answer with a number.", suffix="Q: {question}\nA:")
    assert p.invoke({"question": "1+1"}).text == "Answer with a number.\n\nQ: 2+2\nA: 4\n\nQ: 3+3\nA: 6\n\nQ: 1+1\nA:"


def test_few_shot_chat_examples_inside_a_chat_prompt():
    shots = FewShotChatPromptTemplate(examples=[{"q": "hi", "a": "HI"}],
                                      example_prompt=ChatPromptTemplate.from_messages([("user", "{q}"), ("assistant", "{a}")]))
    p = ChatPromptTemplate.from_messages([("system", "Shout."), shots, ("user", "{q}")])
    roles = [(m.role, m.content) for m in p.invoke({"q": "yo"}).messages]
    assert roles == [("system", "Shout."), ("user", "hi"), ("assistant", "HI"), ("user", "yo")]


def test_positional_fields_are_rejected():
    with pytest.raises(ValueError, match="positional"):
        PromptTemplate("{} and {0}")


def test_bad_message_spec_is_a_type_error():
    with pytest.raises(TypeError, match="int"):
        ChatPromptTemplate.from_messages([3])
