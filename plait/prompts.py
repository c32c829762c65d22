"""Prompt templates: a dict of variables in, a prompt value out.

Templates use ``str.format`` syntax (``{question}``; ``{{`` for a literal brace). A missing
variable raises :class:`MissingVariableError` naming the variable and the template; nothing is
silently left empty.

Example::

    from plait import ChatPromptTemplate, MessagesPlaceholder
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You answer in {language}."),
        MessagesPlaceholder("history", optional=True),
        ("user", "{question}"),
    ])
    prompt.invoke({"language": "French", "question": "Hi?"}).to_messages()
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from plait.messages import (
    AnyMessage,
    ChatPromptValue,
    Message,
    StringPromptValue,
    message_from,
)
from plait.runnable import Runnable


class MissingVariableError(KeyError):
    """A template variable had no value."""

    def __init__(self, variable: str, template: str, given: Sequence[str]) -> None:
        self.variable, self.template = variable, template
        shown = template if len(template) <= 80 else template[:77] + "..."
        super().__init__(f"Missing variable {variable!r} for prompt template {shown!r} "
                         f"(given: {sorted(given) or 'nothing'})")

    def __str__(self) -> str:
        return str(self.args[0])


_FORMATTER = string.Formatter()


def template_variables(template: str) -> list[str]:
    """The variable names in a format string, in order of first appearance."""
    names: list[str] = []
    for _, field, _, _ in _FORMATTER.parse(template):
        if field is None:
            continue
        root = field.split(".")[0].split("[")[0]
        if not root or root.isdigit():
            raise ValueError(f"Prompt template {template!r} has a positional field {{{field}}}: name every variable")
        if root not in names:
            names.append(root)
    return names


def _format(template: str, variables: list[str], values: Mapping[str, Any]) -> str:
    for v in variables:
        if v not in values:
            raise MissingVariableError(v, template, list(values))
    return template.format_map(values)


def _as_dict(input: Any, variables: list[str], who: str) -> Mapping[str, Any]:
    if isinstance(input, Mapping):
        return input
    if len(variables) == 1:  # a single-variable prompt may take the bare value
        return {variables[0]: input}
    raise TypeError(f"{who} expects a dict with keys {variables}, got {type(input).__name__}")


class PromptTemplate(Runnable[dict[str, Any], StringPromptValue]):
    """A text prompt. ``partial_variables`` fill values (or zero-argument callables) in advance."""

    io_bound = False

    def __init__(self, template: str, partial_variables: Mapping[str, Any] | None = None) -> None:
        self.template = template
        self.partial_variables = dict(partial_variables or {})
        self.variables = template_variables(template)
        self.input_variables = [v for v in self.variables if v not in self.partial_variables]

    @classmethod
    def from_template(cls, template: str, **partial_variables: Any) -> PromptTemplate:
        return cls(template, partial_variables)

    def __repr__(self) -> str:
        return f"PromptTemplate({self.template!r})"

    def partial(self, **values: Any) -> PromptTemplate:
        return PromptTemplate(self.template, {**self.partial_variables, **values})

    def _values(self, input: Any) -> Mapping[str, Any]:
        values = _as_dict(input, self.input_variables, "PromptTemplate")
        if self.partial_variables:
            partial = {k: (v() if callable(v) else v) for k, v in self.partial_variables.items()}
            values = {**partial, **values}
        return values

    def format(self, **values: Any) -> str:
        return _format(self.template, self.variables, self._values(values))

    def invoke(self, input: dict[str, Any], **kwargs: Any) -> StringPromptValue:
        return StringPromptValue(text=_format(self.template, self.variables, self._values(input)))


class MessagesPlaceholder:
    """Where a list of messages (chat history) goes in a chat prompt."""

    def __init__(self, variable_name: str, optional: bool = False) -> None:
        self.variable_name = variable_name
        self.optional = optional


class _MessageTemplate:
    __slots__ = ("cls", "template", "variables")

    def __init__(self, role: str, template: str) -> None:
        self.cls: Callable[..., Message] = type(message_from((role, "")))
        self.template = template
        self.variables = template_variables(template)

    def format(self, values: Mapping[str, Any]) -> Message:
        return self.cls(content=_format(self.template, self.variables, values))


MessageLike = tuple[str, str] | Message | MessagesPlaceholder | PromptTemplate


class ChatPromptTemplate(Runnable[dict[str, Any], ChatPromptValue]):
    """A list of message templates, fixed messages and placeholders for message lists."""

    io_bound = False

    def __init__(self, messages: Sequence[Any], partial_variables: Mapping[str, Any] | None = None) -> None:
        self.parts: list[Any] = []
        for m in messages:
            if isinstance(m, (MessagesPlaceholder, Message)):
                self.parts.append(m)
            elif isinstance(m, tuple) and len(m) == 2:
                self.parts.append(_MessageTemplate(m[0], m[1]))
            elif isinstance(m, str):
                self.parts.append(_MessageTemplate("user", m))
            elif isinstance(m, ChatPromptTemplate):
                self.parts.extend(m.parts)
            else:
                raise TypeError(f"ChatPromptTemplate cannot use a {type(m).__name__} as a message: "
                                "pass (role, template) tuples, messages or MessagesPlaceholder")
        self.partial_variables = dict(partial_variables or {})
        names: list[str] = []
        for p in self.parts:
            new = (p.variables if isinstance(p, _MessageTemplate)
                   else [p.variable_name] if isinstance(p, MessagesPlaceholder) else [])
            names.extend(n for n in new if n not in names)
        self.input_variables = [n for n in names if n not in self.partial_variables]

    @classmethod
    def from_messages(cls, messages: Sequence[Any], **partial_variables: Any) -> ChatPromptTemplate:
        return cls(messages, partial_variables)

    @classmethod
    def from_template(cls, template: str) -> ChatPromptTemplate:
        return cls([("user", template)])

    def partial(self, **values: Any) -> ChatPromptTemplate:
        new = ChatPromptTemplate([], {**self.partial_variables, **values})
        new.parts = self.parts
        new.input_variables = [v for v in self.input_variables if v not in values]
        return new

    def __add__(self, other: Any) -> ChatPromptTemplate:
        other = other if isinstance(other, ChatPromptTemplate) else ChatPromptTemplate([other])
        return ChatPromptTemplate([self, other], {**self.partial_variables, **other.partial_variables})

    def format_messages(self, **values: Any) -> list[Message]:
        return self.invoke(values).messages  # type: ignore[return-value]

    def invoke(self, input: dict[str, Any], **kwargs: Any) -> ChatPromptValue:
        values = _as_dict(input, self.input_variables, "ChatPromptTemplate")
        if self.partial_variables:
            partial = {k: (v() if callable(v) else v) for k, v in self.partial_variables.items()}
            values = {**partial, **values}
        out: list[Message] = []
        for p in self.parts:
            if isinstance(p, _MessageTemplate):
                out.append(p.format(values))
            elif isinstance(p, Message):
                out.append(p)
            else:
                if p.variable_name not in values:
                    if p.optional:
                        continue
                    raise MissingVariableError(p.variable_name, f"MessagesPlaceholder({p.variable_name!r})",
                                               list(values))
                history = values[p.variable_name]
                if not isinstance(history, list):
                    raise TypeError(f"Placeholder {p.variable_name!r} needs a list of messages, "
                                    f"got {type(history).__name__}")
                out.extend(message_from(m) for m in history)
        return ChatPromptValue(messages=cast("list[AnyMessage]", out))


class FewShotPromptTemplate(PromptTemplate):
    """A text prompt with worked examples between a prefix and a suffix.

    Example::

        FewShotPromptTemplate(
            examples=[{"q": "2+2", "a": "4"}], example_prompt=PromptTemplate("Q: {q}\\nA: {a}"),
            prefix="Answer briefly.", suffix="Q: {question}\\nA:")
    """

    def __init__(self, examples: Sequence[Mapping[str, Any]], example_prompt: PromptTemplate, suffix: str,
                 prefix: str = "", separator: str = "\n\n",
                 example_selector: Callable[[Mapping[str, Any]], Sequence[Mapping[str, Any]]] | None = None) -> None:
        self.examples, self.example_prompt, self.example_selector = list(examples), example_prompt, example_selector
        self.prefix, self.suffix, self.separator = prefix, suffix, separator
        super().__init__(suffix if not prefix else prefix + separator + suffix)
        self.template_suffix = suffix

    def invoke(self, input: dict[str, Any], **kwargs: Any) -> StringPromptValue:
        values = self._values(input)
        examples = self.example_selector(values) if self.example_selector else self.examples
        shots = [self.example_prompt.format(**ex) for ex in examples]
        head = [_format(self.prefix, template_variables(self.prefix), values)] if self.prefix else []
        tail = _format(self.suffix, template_variables(self.suffix), values)
        return StringPromptValue(text=self.separator.join([*head, *shots, tail]))


class FewShotChatPromptTemplate(ChatPromptTemplate):
    """Examples rendered as chat turns (each example through ``example_prompt``), for use inside
    a larger :class:`ChatPromptTemplate`."""

    def __init__(self, examples: Sequence[Mapping[str, Any]], example_prompt: ChatPromptTemplate) -> None:
        rendered: list[Any] = []
        for ex in examples:
            rendered.extend(example_prompt.invoke(dict(ex)).messages)
        super().__init__(rendered)
