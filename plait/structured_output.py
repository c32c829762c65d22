"""Structured output: a chat model whose answer is a validated pydantic object.

Made by :meth:`plait.chat_model.ChatModel.with_structured_output`. Three ways to get the JSON:

- ``json_schema``: the backend's own JSON-schema output (``response_format``; local models hold
  their decoding to the schema's grammar, so their answer always parses and validates);
- ``tool_calling``: the schema as the one tool the model must call;
- ``json_prompt``: the schema in the system message, the JSON parsed out of the text.

``auto`` picks the first the backend supports natively. When the answer does not validate, the
error is sent back to the model once (as a tool result, or a user turn) and it answers again.

Example::

    from pydantic import BaseModel
    from plait.fake import FakeChatModel

    class City(BaseModel):
        name: str
        country: str

    model = FakeChatModel(['{"name": "Paris", "country": "France"}'])
    model.with_structured_output(City).invoke("Capital of France?")  # City(name='Paris', ...)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from plait import prompted_tools as pt
from plait.messages import AssistantMessage, Message, ToolMessage, UserMessage, to_messages
from plait.parsers import OutputParserError, PydanticOutputParser
from plait.runnable import Runnable
from plait.tools import Tool, ToolArgumentsError, _clean_schema

if TYPE_CHECKING:
    from plait.chat_model import ChatModel

M = TypeVar("M", bound=BaseModel)
METHODS = ("auto", "json_schema", "tool_calling", "json_prompt")


class StructuredOutput(Runnable[Any, Any], Generic[M]):
    """Runs a chat model and validates its answer into ``schema`` (re-asking once on failure)."""

    def __init__(self, model: ChatModel, schema: type[M], *, method: str = "auto",
                 include_raw: bool = False) -> None:
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise TypeError(f"with_structured_output needs a pydantic model class, got {schema!r}")
        if method not in METHODS:
            raise ValueError(f"Unknown structured-output method {method!r}: use one of {METHODS}")
        if method == "auto":
            method = ("json_schema" if model.supports_json_schema
                      else "tool_calling" if model.supports_tools else "json_prompt")
        self.model = model
        self.schema = schema
        self.method = method
        self.include_raw = include_raw
        self.tool = Tool.from_model(schema, name=re.sub(r"[^A-Za-z0-9_-]", "_", schema.__name__)[:64])
        self.parser = PydanticOutputParser(schema)

    def get_name(self) -> str:
        return self.name or f"StructuredOutput({self.schema.__name__})"

    def _options(self) -> dict[str, Any]:
        if self.method == "tool_calling":
            return {"tools": [self.tool], "tool_choice": self.tool.name}
        if self.method == "json_schema":
            return {"response_format": {"type": "json_schema", "json_schema": {
                "name": self.tool.name, "schema": _clean_schema(self.schema.model_json_schema()), "strict": False}}}
        return {}

    def _messages(self, input: Any) -> list[Message]:
        messages = to_messages(input)
        if self.method == "json_prompt":
            messages = pt.add_system(messages, self.parser.get_format_instructions())
        return messages

    def _parse(self, msg: AssistantMessage) -> M:
        if self.method == "tool_calling" and msg.tool_calls:
            call = next((c for c in msg.tool_calls if c.name == self.tool.name), msg.tool_calls[0])
            return self.tool.validate_arguments(call)  # type: ignore[no-any-return]
        return self.parser.invoke(msg)

    def _feedback(self, msg: AssistantMessage, error: Exception) -> list[Message]:
        """The bad answer and the error, so the model can correct itself."""
        reason = str(error).split("\nRaw output:")[0]
        if msg.tool_calls:
            return [msg, *(ToolMessage(tool_call_id=c.id, name=c.name,
                                       content=f"Error: {reason}\nCall {self.tool.name} again with corrected arguments.")
                           for c in msg.tool_calls)]
        return [AssistantMessage(content=msg.content),
                UserMessage(content=f"That answer could not be used: {reason}\n"
                                    "Reply again with only a JSON object that matches the schema.")]

    def _result(self, msg: AssistantMessage, value: M) -> Any:
        return {"raw": msg, "parsed": value} if self.include_raw else value

    def _fail(self, msg: AssistantMessage, error: Exception) -> OutputParserError:
        raw = msg.content or str([c.arguments for c in msg.tool_calls])
        return OutputParserError(f"The model's answer did not validate as {self.schema.__name__}, "
                                 f"also after sending it the error once: {str(error).split(chr(10))[0]}",
                                 raw, errors=getattr(error, "errors", None))

    def _check(self, msg: AssistantMessage, messages: list[Message], last: bool) -> tuple[bool, Any]:
        """``(True, result)`` if ``msg`` validates, else ``(False, messages + feedback)``; raises on the last try."""
        try:
            return True, self._result(msg, self._parse(msg))
        except (OutputParserError, ToolArgumentsError) as e:
            if last:
                raise self._fail(msg, e) from e
            return False, [*messages, *self._feedback(msg, e)]

    def invoke(self, input: Any, **options: Any) -> Any:
        messages, opts = self._messages(input), {**self._options(), **options}
        for last in (False, True):
            done, out = self._check(self.model.invoke(messages, **opts), messages, last)
            if done:
                break
            messages = out
        return out

    async def ainvoke(self, input: Any, **options: Any) -> Any:
        messages, opts = self._messages(input), {**self._options(), **options}
        for last in (False, True):
            done, out = self._check(await self.model.ainvoke(messages, **opts), messages, last)
            if done:
                break
            messages = out
        return out
