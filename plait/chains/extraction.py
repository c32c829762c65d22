"""Structured extraction: text in, a validated pydantic object out.

The text goes to the model with an instruction to extract the fields of the schema; the model's
``with_structured_output`` returns a validated instance (the backend's JSON-schema mode, native
tool calling, or a prompted JSON answer, whichever it has; an invalid answer is sent back once
with the validation error). ``many=True`` extracts a list of objects.

Example::

    from pydantic import BaseModel
    from plait.chains.extraction import Extractor

    class Person(BaseModel):
        name: str
        age: int

    Extractor(model, Person).invoke("Ada Lovelace was 36.")   # Person(name='Ada Lovelace', age=36)
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field, create_model

from plait.messages import SystemMessage, UserMessage
from plait.runnable import Runnable

M = TypeVar("M", bound=BaseModel)

INSTRUCTIONS = ("Extract the requested information from the text. Use only facts stated in the text; "
                "copy names and numbers exactly.")


class Extractor(Runnable[Any, Any], Generic[M]):
    """Text (or ``{"text": ...}``) -> an instance of ``schema`` (a list of them with ``many=True``).

    Args:
        model: a chat model (anything with ``with_structured_output``).
        schema: the pydantic model to fill.
        instructions: the system message.
        many: extract every occurrence, as a list.
    """

    def __init__(self, model: Any, schema: type[M], *, instructions: str = INSTRUCTIONS,
                 many: bool = False) -> None:
        if not hasattr(model, "with_structured_output"):
            raise TypeError(f"{type(model).__name__} has no with_structured_output(); pass a plait ChatModel")
        self.schema = schema
        self.many = many
        target: type[BaseModel] = schema
        if many:
            target = create_model(f"{schema.__name__}List",
                                  items=(list[schema], Field(description=f"every {schema.__name__} in the text")))  # type: ignore[valid-type]
        self.structured = model.with_structured_output(target)
        self.instructions = instructions

    def get_name(self) -> str:
        return self.name or f"Extractor({self.schema.__name__})"

    def _messages(self, input: Any) -> list[Any]:
        text = input["text"] if isinstance(input, dict) else input
        if not isinstance(text, str):
            raise TypeError(f"Extractor takes a text or {{'text': ...}}, got {type(input).__name__}")
        return [SystemMessage(content=self.instructions), UserMessage(content=f"Text:\n{text}")]

    def invoke(self, input: Any, **kwargs: Any) -> Any:
        value = self.structured.invoke(self._messages(input), **kwargs)
        return value.items if self.many else value

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        value = await self.structured.ainvoke(self._messages(input), **kwargs)
        return value.items if self.many else value
