"""Tools: JSON schemas from type hints and docstrings, validated calls."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from plait.messages import ToolCall
from plait.tools import Tool, ToolArgumentsError, parse_docstring, to_tool, tool


class Unit(StrEnum):
    C = "celsius"
    F = "fahrenheit"


class Place(BaseModel):
    city: str
    country: str | None = None


def search(query: str, limit: int = 5, tags: list[str] | None = None, exact: bool = False,
           mode: Literal["fast", "deep"] = "fast", unit: Unit = Unit.C, place: Place | None = None,
           score: float = 0.5) -> dict:
    """Search the notes.

    Longer explanation that is part of the description.

    Args:
        query: what to look for.
        limit (int): how many results,
            at most.
        tags: only notes with these tags.
        exact: match the words exactly.
        mode: how hard to look.
        unit: temperature unit.
        place: where.
        score: minimum score.

    Returns:
        The results.
    """
    return {"query": query, "limit": limit, "tags": tags, "exact": exact, "mode": mode, "unit": unit,
            "place": place, "score": score}


def test_schema_from_type_hints_and_docstring() -> None:
    t = Tool.from_function(search)
    assert t.name == "search"
    assert t.description == "Search the notes.\n\nLonger explanation that is part of the description."
    p = t.parameters
    assert p["type"] == "object" and p["required"] == ["query"] and p["additionalProperties"] is False
    props = p["properties"]
    assert props["query"] == {"type": "string", "description": "what to look for."}
    assert props["limit"] == {"type": "integer", "default": 5, "description": "how many results, at most."}
    assert props["tags"]["anyOf"][0] == {"type": "array", "items": {"type": "string"}}
    assert props["exact"]["type"] == "boolean" and props["score"]["type"] == "number"
    assert props["mode"]["enum"] == ["fast", "deep"]
    assert "Place" in p["$defs"] and "Unit" in p["$defs"]
    assert "title" not in props["query"] and "title" not in p


def test_docstring_styles() -> None:
    google = parse_docstring("Do it.\n\nArgs:\n    a (int): first\n        continued.\n    b: second\n")
    numpy = parse_docstring("Do it.\n\nParameters\n----------\na : int\n    first\n    continued.\nb : str\n"
                            "    second\n\nReturns\n-------\nint\n")
    sphinx = parse_docstring("Do it.\n\n:param a: first\n    continued.\n:param str b: second\n:returns: x\n")
    for summary, args in (google, numpy, sphinx):
        assert summary == "Do it."
        assert args == {"a": "first continued.", "b": "second"}
    assert parse_docstring(None) == ("", {})
    assert parse_docstring("Returns the weather:\n  sunny.")[0].startswith("Returns the weather")


def test_invoke_validates_and_converts_arguments() -> None:
    t = to_tool(search)
    out = t.invoke({"query": "q", "limit": "3", "unit": "fahrenheit", "place": {"city": "Oslo"}})
    assert out["limit"] == 3 and out["unit"] is Unit.F
    assert out["place"] == Place(city="Oslo")  # nested models arrive as models
    assert t.invoke('{"query": "json text"}')["query"] == "json text"
    assert t.invoke(ToolCall(id="1", name="search", arguments={"query": "from a call"}))["query"] == "from a call"


@pytest.mark.parametrize(("args", "message"), [
    ({}, r"query: Field required"),
    ({"query": "q", "limit": "many"}, r"limit: Input should be a valid integer"),
    ({"query": "q", "mode": "slow"}, r"mode: Input should be 'fast' or 'deep'"),
    ({"query": "q", "colour": "red"}, r"colour: Extra inputs are not permitted"),
    ("{not json", r"not valid JSON"),
    ([1, 2], r"must be a JSON object"),
])
def test_bad_arguments_name_the_problem(args: object, message: str) -> None:
    with pytest.raises(ToolArgumentsError, match=message) as err:
        to_tool(search).invoke(args)
    assert err.value.tool == "search"


def test_call_for_another_tool_is_refused() -> None:
    with pytest.raises(ToolArgumentsError, match="for tool 'other'"):
        to_tool(search).invoke(ToolCall(id="1", name="other", arguments={}))


def test_decorator_keeps_the_function_callable_and_takes_a_name() -> None:
    @tool(name="add_numbers", description="Adds.")
    def add(a: int, b: int = 1) -> int:
        return a + b

    assert isinstance(add, Tool) and add.name == "add_numbers" and add.description == "Adds."
    assert add(2, 3) == 5 and add.invoke({"a": 2}) == 3
    assert add.to_openai() == {"type": "function", "function": {
        "name": "add_numbers", "description": "Adds.", "parameters": add.parameters}}


async def test_async_functions_and_ainvoke() -> None:
    @tool
    async def slow_double(x: int) -> int:
        """Double a number, slowly."""
        await asyncio.sleep(0)
        return 2 * x

    @tool
    def triple(x: int) -> int:
        """Triple."""
        return 3 * x

    assert await slow_double.ainvoke({"x": 4}) == 8
    assert await triple.ainvoke({"x": 4}) == 12
    assert slow_double.invoke({"x": 5}) == 10  # sync call of an async tool runs it to completion


def test_pydantic_model_as_a_tool() -> None:
    class Answer(BaseModel):
        """The final answer."""

        text: str = Field(description="the answer text")
        confidence: float = Field(ge=0, le=1)

    t = to_tool(Answer)
    assert t.name == "Answer" and t.description == "The final answer."
    assert t.parameters["properties"]["text"]["description"] == "the answer text"
    assert t.invoke({"text": "42", "confidence": 0.9}) == Answer(text="42", confidence=0.9)
    with pytest.raises(ToolArgumentsError, match="confidence"):
        t.invoke({"text": "42", "confidence": 2})


def test_tools_from_openai_dicts_and_bad_inputs() -> None:
    spec = {"type": "function", "function": {"name": "lookup", "description": "Look up.",
                                             "parameters": {"type": "object", "properties": {"k": {"type": "string"}}}}}
    t = to_tool(spec)
    assert t.name == "lookup" and t.to_openai() == spec
    with pytest.raises(TypeError, match="no function to run"):
        t.invoke({"k": "v"})
    with pytest.raises(ValueError, match="needs a 'name'"):
        to_tool({"description": "nameless"})
    with pytest.raises(TypeError, match="Cannot make a tool from int"):
        to_tool(3)
    with pytest.raises(ValueError, match="must be 1-64 letters"):
        Tool("has spaces")

    def star(*args: int) -> int:
        return 0

    with pytest.raises(TypeError, match=r"has \*args"):
        to_tool(star)
