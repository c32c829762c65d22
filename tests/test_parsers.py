from __future__ import annotations

import pytest
from pydantic import BaseModel

from plait import JsonOutputParser, OutputParserError, PydanticOutputParser, StrOutputParser
from plait.fake import FakeChatModel
from plait.messages import AssistantMessage
from plait.parsers import parse_partial_json


def test_str_parser_passes_tokens_through_while_streaming():
    chain = FakeChatModel(["one two three"]) | StrOutputParser()
    assert list(chain.stream("x")) == ["one", " two", " three"]
    assert StrOutputParser().invoke(AssistantMessage(content="hi")) == "hi"


@pytest.mark.parametrize("text", [
    '{"a": 1}',
    '```json\n{"a": 1}\n```',
    'Sure! Here it is:\n```\n{"a": 1}\n```\nAnything else?',
    'The result is {"a": 1} as asked.',
])
def test_json_parser_tolerates_fences_and_prose(text):
    assert JsonOutputParser().invoke(text) == {"a": 1}


def test_json_parser_error_holds_the_raw_text():
    with pytest.raises(OutputParserError) as err:
        JsonOutputParser().invoke("no json here")
    assert err.value.raw == "no json here"


def test_json_parser_streams_growing_partial_objects():
    chain = FakeChatModel(['```json\n{"name": "Ada Lovelace", "tags": ["math", "code"]}\n```']) | JsonOutputParser()
    parts = list(chain.stream("x"))
    assert parts[-1] == {"name": "Ada Lovelace", "tags": ["math", "code"]}
    assert len(parts) > 2
    assert all(isinstance(p, dict) for p in parts)
    assert {"name": "Ada"} in parts  # a partial string value was seen before the whole


def test_parse_partial_json():
    assert parse_partial_json('{"a": [1, 2') == {"a": [1, 2]}
    assert parse_partial_json('{"a": "hel') == {"a": "hel"}
    assert parse_partial_json('{"a": 1, "b') == {"a": 1}
    assert parse_partial_json("") is None


class Person(BaseModel):
    name: str
    age: int


def test_pydantic_parser_validates_and_reports():
    parser = PydanticOutputParser(Person)
    assert parser.invoke('{"name": "Ada", "age": 36}') == Person(name="Ada", age=36)
    with pytest.raises(OutputParserError) as err:
        parser.invoke('{"name": "Ada", "age": "old"}')
    assert err.value.raw == '{"name": "Ada", "age": "old"}'
    assert err.value.errors[0]["loc"] == ("age",)
    assert '"age"' in parser.get_format_instructions()
