"""Structured extraction: text in, a validated pydantic object out (via with_structured_output).

Run: python examples/extraction.py
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from plait.chains.extraction import Extractor
from plait.parsers import OutputParserError

try:
    from examples._model import example_model
except ImportError:
    from _model import example_model  # type: ignore[no-redef]


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str = Field(description="the person's full name")
    age: int = Field(description="age in years", ge=0, le=150)
    city: str = Field(description="the city the person lives in")


TEXT = "Marie Curie is 42 years old and lives in Paris."


def main(model: Any = None, text: str = TEXT) -> Person | None:
    extractor = Extractor(example_model(model, max_tokens=80, temperature=0), Person)
    print(f"text: {text}")
    try:
        person = extractor.invoke(text)
    except OutputParserError as e:
        # Small local models do not always produce valid JSON, even after being shown the error.
        print(f"The model could not fill the schema: {str(e).splitlines()[0]}")
        return None
    print(f"extracted: {person!r}")
    return person


if __name__ == "__main__":
    main()
