"""Input and output types of a Runnable, for the generic routes' JSON schemas and input checks.

Derived, in this order, from:
1. ``input_type`` / ``output_type`` attributes on the runnable (set them to any type pydantic
   understands to be explicit);
2. what plait's own steps are: a chat model takes a string or messages and returns an assistant
   message; a prompt template takes an object with its variables; a sequence takes what its first
   step takes and returns what its last returns; a dict of steps returns an object of their outputs;
   a wrapper (``bind``, retry, fallbacks, tracing) is its wrapped step;
3. a function step's type hints (first parameter, return);
4. the class's ``Runnable[In, Out]`` parameters, then the type hints of its ``invoke``.
Where none of these says anything, the schema is ``{}`` (any JSON) and the input is passed as it
came; pass ``input_schema=`` / ``output_schema=`` to ``create_app`` to fix that.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, TypeVar

from pydantic import TypeAdapter

from plait.runnable import Runnable

UNKNOWN: Any = object()  # "no type could be derived"
_ANY_NOTE = ("Any JSON value: plait could not derive this step's type (set input_type/output_type on "
             "the runnable, or pass input_schema=/output_schema= to create_app).")


def _known(tp: Any) -> bool:
    return tp is not UNKNOWN and tp is not Any and not isinstance(tp, TypeVar)


def _generic_args(r: Runnable[Any, Any]) -> tuple[Any, Any]:
    for cls in type(r).__mro__:
        for base in getattr(cls, "__orig_bases__", ()):
            if typing.get_origin(base) is Runnable or (
                    isinstance(typing.get_origin(base), type) and issubclass(typing.get_origin(base), Runnable)):
                args = typing.get_args(base)
                if len(args) == 2:
                    return args[0], args[1]
    return UNKNOWN, UNKNOWN


def _hints(func: Any) -> tuple[Any, Any]:
    try:
        hints = typing.get_type_hints(func)
        params = [p for p in inspect.signature(func).parameters.values()
                  if p.name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except Exception:  # unresolvable forward references, builtins without signatures
        return UNKNOWN, UNKNOWN
    first = hints.get(params[0].name, UNKNOWN) if params else UNKNOWN
    return first, hints.get("return", UNKNOWN)


def io_types(r: Runnable[Any, Any]) -> tuple[Any, Any]:
    """``(input_type, output_type)`` of a runnable; ``UNKNOWN`` where nothing says."""
    from plait.chat_model import ChatModel
    from plait.compose import Assign, Parallel, RunnableSequence
    from plait.messages import AnyMessage, AssistantMessage
    from plait.runnable import Lambda, Passthrough
    from plait.wrappers import _Wrapper

    explicit_in = getattr(r, "input_type", UNKNOWN)
    explicit_out = getattr(r, "output_type", UNKNOWN)
    if isinstance(r, _Wrapper):
        inner_in, inner_out = io_types(r.bound)
    elif isinstance(r, ChatModel):
        inner_in, inner_out = str | list[AnyMessage], AssistantMessage
    elif hasattr(r, "input_variables") and isinstance(r.input_variables, list):  # prompt templates
        inner_in, inner_out = _generic_args(r)
        inner_in = {"__variables__": list(r.input_variables)}
    elif isinstance(r, RunnableSequence):
        inner_in = io_types(r.steps[0])[0]
        inner_out = io_types(r.steps[-1])[1]
    elif isinstance(r, Parallel):
        inner_in = next((t for t in (io_types(s)[0] for s in r.steps.values()) if _known(t)), UNKNOWN)
        inner_out = {"__object__": {k: io_types(s)[1] for k, s in r.steps.items()}}
    elif isinstance(r, Assign):
        inner_in, inner_out = dict[str, Any], dict[str, Any]
    elif isinstance(r, Passthrough):
        inner_in, inner_out = UNKNOWN, UNKNOWN
    elif isinstance(r, Lambda):
        inner_in, inner_out = _hints(r.func)
    else:
        inner_in, inner_out = _generic_args(r)
        if not _known(inner_in) or not _known(inner_out):
            hint_in, hint_out = _hints(type(r).invoke) if type(r).invoke is not Runnable.invoke else (UNKNOWN, UNKNOWN)
            inner_in = inner_in if _known(inner_in) else hint_in
            inner_out = inner_out if _known(inner_out) else hint_out
    return (explicit_in if explicit_in is not UNKNOWN else inner_in,
            explicit_out if explicit_out is not UNKNOWN else inner_out)


def json_schema(tp: Any) -> dict[str, Any]:
    """The JSON schema of a derived type (``{}`` with a description when unknown)."""
    if isinstance(tp, dict) and "__variables__" in tp:
        names = tp["__variables__"]
        return {"type": "object", "properties": {n: {} for n in names}, "required": names,
                "description": "The prompt's variables."}
    if isinstance(tp, dict) and "__object__" in tp:
        props = {k: json_schema(t) for k, t in tp["__object__"].items()}
        return {"type": "object", "properties": props, "required": list(props)}
    if isinstance(tp, dict):  # a JSON schema given as is
        return tp
    if not _known(tp):
        return {"description": _ANY_NOTE}
    try:
        return TypeAdapter(tp).json_schema()
    except Exception:  # a type pydantic cannot describe (arbitrary classes)
        return {"description": f"{getattr(tp, '__name__', tp)} (no JSON schema): " + _ANY_NOTE}


class InputCheck:
    """Validates (and converts) generic-route input against a runnable's derived input type."""

    def __init__(self, tp: Any) -> None:
        self.tp = tp
        self.adapter: TypeAdapter[Any] | None = None
        if _known(tp) and not isinstance(tp, dict):
            try:
                self.adapter = TypeAdapter(tp)
            except Exception:  # not a type pydantic can validate: pass input through
                self.adapter = None

    def __call__(self, value: Any) -> Any:
        """The checked input; raises ValueError (a 400) saying what is wrong."""
        if isinstance(self.tp, dict) and "__variables__" in self.tp:
            if not isinstance(value, dict):
                raise ValueError(f"input must be an object with the keys {self.tp['__variables__']}")
            missing = [n for n in self.tp["__variables__"] if n not in value]
            if missing:
                raise ValueError(f"input is missing the keys {missing}")
            return value
        if self.adapter is None:
            return value
        return self.adapter.validate_python(value)
