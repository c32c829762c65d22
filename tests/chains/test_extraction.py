from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from plait.chains.extraction import Extractor
from plait.fake import FakeChatModel
from plait.parsers import OutputParserError


class Person(BaseModel):
    name: str
    age: int = Field(ge=0)


class TextModel(FakeChatModel):
    supports_tools = False


def test_extracts_a_validated_object_and_retries_once_with_the_error():
    model = TextModel(['{"name": "Ada", "age": -1}', '{"name": "Ada", "age": 36}'])
    person = Extractor(model, Person).invoke("Ada Lovelace was 36.")
    assert person == Person(name="Ada", age=36)
    assert "greater than or equal to 0" in model.calls[1][-1].content
    assert "Ada Lovelace was 36." in model.calls[0][-1].content


def test_many_and_failure():
    model = TextModel(['{"items": [{"name": "Ada", "age": 36}, {"name": "Alan", "age": 41}]}'])
    people = Extractor(model, Person, many=True).invoke({"text": "Ada was 36, Alan 41."})
    assert [p.name for p in people] == ["Ada", "Alan"]
    with pytest.raises(OutputParserError):
        Extractor(TextModel(["not json"]), Person).invoke("x")
    with pytest.raises(TypeError, match="with_structured_output"):
        Extractor(object(), Person)
