"""Output parsers: an assistant message (or text) in, a string, JSON object or pydantic model out.

Parsers stream: :class:`StrOutputParser` passes tokens through as they come, and
:class:`JsonOutputParser` yields a growing partial object each time more of it has arrived.

Example::

    from plait import JsonOutputParser
    JsonOutputParser().invoke('Sure! ```json\\n{"a": 1}\\n```')  # {"a": 1}
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from plait.messages import AssistantChunk, Message
from plait.runnable import Runnable

M = TypeVar("M", bound=BaseModel)


class OutputParserError(ValueError):
    """The model's text could not be parsed. ``raw`` holds the text, ``errors`` the details."""

    def __init__(self, message: str, raw: str, errors: Any = None) -> None:
        super().__init__(f"{message}\nRaw output: {raw[:500]!r}")
        self.raw = raw
        self.errors = errors


def text_of(value: Any) -> str:
    """The text of a message, chunk or string."""
    if isinstance(value, str):
        return value
    if isinstance(value, (Message, AssistantChunk)):
        return value.content
    raise TypeError(f"A parser takes a message or a string, not {type(value).__name__}")


class StrOutputParser(Runnable[Any, str]):
    """The text of a message; streams token by token."""

    io_bound = False

    def invoke(self, input: Any, **kwargs: Any) -> str:
        return input if type(input) is str else text_of(input)

    async def ainvoke(self, input: Any, **kwargs: Any) -> str:
        return self.invoke(input)

    def transform(self, inputs: Iterator[Any], **kwargs: Any) -> Iterator[str]:
        for chunk in inputs:
            text = text_of(chunk)
            if text:
                yield text

    async def atransform(self, inputs: AsyncIterator[Any], **kwargs: Any) -> AsyncIterator[str]:
        async for chunk in inputs:
            text = text_of(chunk)
            if text:
                yield text


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)(?:```|$)", re.DOTALL)


def _strip_to_json(text: str) -> str:
    """Drop code fences and any prose before the first ``{`` or ``[``."""
    m = _FENCE.search(text)
    if m:
        text = m.group(1)
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    return text[min(starts):] if starts else text.strip()


def parse_partial_json(text: str) -> Any:
    """Parse JSON that may be cut off: close open strings, arrays and objects. None if not yet parseable."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    in_string, stack = _scan(text)
    # Try the text closed as-is, then with trailing characters removed (a dangling key, comma, colon...).
    body = text
    while body:
        candidate = body + ('"' if in_string else "") + "".join(reversed(stack))
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            body = body[:-1]
            in_string, stack = _scan(body)
    return None


def _scan(text: str) -> tuple[bool, list[str]]:
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    return in_string, stack


def parse_json(text: str) -> Any:
    """Parse a JSON value out of model output (code fences and leading prose allowed)."""
    body = _strip_to_json(text)
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        # Trailing prose after the JSON: decode the first complete value.
        try:
            value, _ = json.JSONDecoder().raw_decode(body)
            return value
        except json.JSONDecodeError as e:
            raise OutputParserError(f"The model's output is not valid JSON ({e.msg} at char {e.pos})",
                                    text, errors=str(e)) from e


class _PartialJSON:
    """The text of a JSON stream so far and the last partial object it gave."""

    def __init__(self) -> None:
        self.text, self.last = "", None

    def feed(self, chunk: Any) -> list[Any]:
        """The new partial object after ``chunk``, if it changed (as a list of zero or one)."""
        self.text += text_of(chunk)
        body = _strip_to_json(self.text)
        if not body or body[0] not in "{[":
            return []
        value = parse_partial_json(body)
        if value is None or value == self.last:
            return []
        self.last = value
        return [value]

    def end(self) -> list[Any]:
        """The whole parsed object, unless it was the last partial one."""
        final = parse_json(self.text)
        return [final] if final != self.last else []


class JsonOutputParser(Runnable[Any, Any]):
    """Parses JSON from model output; streams partial objects as they grow."""

    io_bound = False

    def invoke(self, input: Any, **kwargs: Any) -> Any:
        return parse_json(text_of(input))

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        return self.invoke(input)

    def transform(self, inputs: Iterator[Any], **kwargs: Any) -> Iterator[Any]:
        """Yields each new partial object (every yield is the whole object so far, not a delta)."""
        seen = _PartialJSON()
        for chunk in inputs:
            yield from seen.feed(chunk)
        yield from seen.end()

    async def atransform(self, inputs: AsyncIterator[Any], **kwargs: Any) -> AsyncIterator[Any]:
        seen = _PartialJSON()
        async for chunk in inputs:
            for value in seen.feed(chunk):
                yield value
        for value in seen.end():
            yield value

    def stream(self, input: Any, **kwargs: Any) -> Iterator[Any]:
        yield from self.transform(iter([input]))

    async def astream(self, input: Any, **kwargs: Any) -> AsyncIterator[Any]:
        yield self.invoke(input)


class PydanticOutputParser(Runnable[Any, M], Generic[M]):
    """Validates model output into a pydantic model.

    Failure raises :class:`OutputParserError` holding the raw text and the validation errors.
    ``get_format_instructions()`` is text to put in the prompt.
    """

    io_bound = False

    def __init__(self, model: type[M]) -> None:
        self.model = model

    def get_format_instructions(self) -> str:
        schema = self.model.model_json_schema()
        return ("Reply with only a JSON object (no prose, no code fences) that matches this JSON schema:\n"
                f"{json.dumps(schema)}")

    def invoke(self, input: Any, **kwargs: Any) -> M:
        raw = text_of(input)
        data = parse_json(raw)
        try:
            return self.model.model_validate(data)
        except ValidationError as e:
            raise OutputParserError(f"The model's JSON does not match {self.model.__name__}: {e}",
                                    raw, errors=e.errors()) from e

    async def ainvoke(self, input: Any, **kwargs: Any) -> M:
        return self.invoke(input)
