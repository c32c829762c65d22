"""Tools a chat model can call: a typed Python function (or a pydantic model) plus its description.

A :class:`Tool` has a ``name``, a ``description`` and ``parameters`` (a JSON schema), built from
the function's type hints and docstring. It is a Runnable: ``tool.invoke({"city": "Paris"})``
validates the arguments against the schema (clear error naming the bad argument) and calls the
function. A pydantic model as a tool validates into an instance of the model (structured output).

Example::

    from plait.tools import tool

    @tool
    def get_weather(city: str, unit: str = "celsius") -> str:
        '''Current weather of a city.

        Args:
            city: the city name, e.g. "Paris".
            unit: "celsius" or "fahrenheit".
        '''
        return f"22 degrees {unit} in {city}"

    get_weather.parameters["required"]        # ["city"]
    get_weather.invoke({"city": "Paris"})     # "22 degrees celsius in Paris"
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import re
from collections.abc import Callable
from typing import Any, cast, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from plait.messages import ToolCall
from plait.runnable import Runnable


class ToolArgumentsError(ValueError):
    """The arguments of a tool call do not match the tool's parameters."""

    def __init__(self, tool: str, message: str, errors: Any = None) -> None:
        super().__init__(f"Invalid arguments for tool {tool!r}: {message}")
        self.tool = tool
        self.errors = errors


# --- docstrings --------------------------------------------------------------------------------
_ARG_SECTIONS = {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments"}
_SECTIONS = _ARG_SECTIONS | {"returns", "return", "yields", "raises", "examples", "example", "notes", "note",
                             "attributes", "see also", "references", "warnings", "warning", "todo"}
_HEADER = re.compile(r"^([A-Za-z][A-Za-z ]*?)\s*:?\s*$")
_GOOGLE_ARG = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ARG = re.compile(r"^\*{0,2}(\w+)\s*(?::.*)?$")
_SPHINX_ARG = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a docstring into its description and per-argument descriptions.

    Understands Google style (``Args:`` then ``name: text`` or ``name (type): text``), numpy style
    (``Parameters`` over a ``----------`` line, then ``name : type`` and indented text) and Sphinx
    (``:param name: text``). Continuation lines are joined to the argument above them.
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    section = ""          # "" = the description; else the lower-cased section name
    style = ""            # "google" | "numpy" inside an argument section
    current: str | None = None
    base = 0              # indent of the argument names in the current section
    i = 0
    while i < len(lines):
        line, stripped = lines[i], lines[i].strip()
        indent = len(line) - len(line.lstrip())
        underlined = i + 1 < len(lines) and len(lines[i + 1].strip()) >= 3 and set(lines[i + 1].strip()) == {"-"}
        header = _HEADER.match(stripped) if indent == 0 else None
        if header and (underlined or stripped.endswith(":")) and header.group(1).lower() in _SECTIONS:
            section, current = header.group(1).lower(), None
            style = "numpy" if underlined else "google"
            base = -1
            i += 2 if underlined else 1
            continue
        sphinx = _SPHINX_ARG.match(stripped)
        if sphinx:
            section, style, current = "sphinx", "sphinx", sphinx.group(1)
            args[current] = sphinx.group(2).strip()
        elif section == "sphinx":
            if stripped.startswith(":"):
                current = None  # :returns:, :raises: ...
            elif stripped and current:
                args[current] = (args[current] + " " + stripped).strip()
        elif section in _ARG_SECTIONS:
            if stripped and base < 0:
                base = indent
            starts = stripped and indent == base
            google = _GOOGLE_ARG.match(stripped) if starts and style == "google" else None
            numpy = _NUMPY_ARG.match(stripped) if starts and style == "numpy" else None
            if google:
                current = google.group(1)
                args[current] = google.group(2).strip()
            elif numpy:
                current = numpy.group(1)
                args[current] = ""
            elif stripped and current:
                args[current] = (args[current] + " " + stripped).strip()
        elif not section:
            summary.append(line)
        i += 1
    return "\n".join(summary).strip(), args


# --- schemas -----------------------------------------------------------------------------------
def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's auto-generated titles: they repeat the names and cost prompt tokens."""
    def walk(node: Any, in_properties: bool = False) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "title" and not in_properties and isinstance(v, str):
                    continue
                out[k] = walk(v, in_properties=(k == "properties" and not in_properties))
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    cleaned = walk(schema)
    cleaned.setdefault("type", "object")
    cleaned.setdefault("properties", {})
    return cleaned


def _model_from_function(func: Callable[..., Any], arg_docs: dict[str, str]) -> type[BaseModel]:
    """A pydantic model of a function's parameters (types from hints, defaults, docstring text)."""
    try:
        hints = get_type_hints(func)
    except Exception as e:  # an annotation that cannot be resolved
        raise TypeError(f"Cannot read the type hints of {func.__name__!r}: {e}") from e
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(func).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"Tool function {func.__name__!r} has *{pname}: a tool needs named, typed parameters")
        if pname in ("self", "cls"):
            continue
        annotation = hints.get(pname, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (annotation, Field(default, description=arg_docs.get(pname) or None))
    model = create_model(f"{func.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    return model


class Tool(Runnable[Any, Any]):
    """A callable tool: name, description, JSON-schema parameters, and the function that runs it.

    Build one with :func:`tool` / :meth:`from_function` (a typed function), :meth:`from_model`
    (a pydantic model: calling it validates and returns an instance) or directly from a schema.
    ``invoke`` takes the arguments as a dict, a JSON string or a :class:`ToolCall`.
    """

    name: str

    def __init__(self, name: str, description: str = "", parameters: dict[str, Any] | None = None,
                 func: Callable[..., Any] | None = None, args_model: type[BaseModel] | None = None,
                 returns_model: bool = False) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", name):
            raise ValueError(f"Tool name {name!r} must be 1-64 letters, digits, '_' or '-' (the OpenAI rule)")
        self.name = name
        self.description = description
        self.parameters = parameters if parameters is not None else (
            _clean_schema(args_model.model_json_schema()) if args_model else {"type": "object", "properties": {}})
        self.func = func
        self.args_model = args_model
        self.returns_model = returns_model
        self.io_bound = True

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tool) and (self.name, self.description, self.parameters, self.func) == (
            other.name, other.description, other.parameters, other.func)

    __hash__ = Runnable.__hash__

    # --- construction ----------------------------------------------------------------------------
    @classmethod
    def from_function(cls, func: Callable[..., Any], name: str | None = None,
                      description: str | None = None) -> Tool:
        """A tool from a typed function; the description and argument texts come from its docstring."""
        summary, arg_docs = parse_docstring(func.__doc__)
        model = _model_from_function(func, arg_docs)
        return cls(name or func.__name__, description if description is not None else summary,
                   func=func, args_model=model)

    @classmethod
    def from_model(cls, model: type[BaseModel], name: str | None = None, description: str | None = None) -> Tool:
        """A tool whose arguments are a pydantic model's fields; invoking it returns the model instance."""
        summary, _ = parse_docstring(model.__doc__)
        return cls(name or model.__name__, description if description is not None else summary,
                   parameters=_clean_schema(model.model_json_schema()), args_model=model, returns_model=True)

    # --- use -------------------------------------------------------------------------------------
    def to_openai(self) -> dict[str, Any]:
        """The tool in the OpenAI ``tools`` wire format."""
        fn: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            fn["description"] = self.description
        return {"type": "function", "function": fn}

    def spec(self) -> dict[str, Any]:
        """Name, description and parameters as plain data (used to describe tools in prompts)."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def validate_arguments(self, arguments: Any) -> Any:
        """Check arguments (dict, JSON text or ToolCall) against the parameters.

        Returns the keyword arguments for the function (typed values), or the model instance for a
        pydantic-model tool. Raises :class:`ToolArgumentsError` naming what is wrong.
        """
        if isinstance(arguments, ToolCall):
            if arguments.name != self.name:
                raise ToolArgumentsError(self.name, f"this call is for tool {arguments.name!r}")
            arguments = arguments.arguments
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as e:
                raise ToolArgumentsError(self.name, f"arguments are not valid JSON ({e.msg}): {arguments!r}") from e
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ToolArgumentsError(self.name, f"arguments must be a JSON object, got {type(arguments).__name__}")
        if self.args_model is None:
            return dict(arguments)
        try:
            value = self.args_model.model_validate(arguments)
        except ValidationError as e:
            details = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(arguments)'}: {err['msg']}"
                                for err in e.errors())
            raise ToolArgumentsError(self.name, details, errors=e.errors()) from e
        if self.returns_model:
            return value
        return {k: getattr(value, k) for k in type(value).model_fields}

    def _arguments(self, input: Any) -> Any:
        args = self.validate_arguments(input)
        if self.func is None and not self.returns_model:
            raise TypeError(f"Tool {self.name!r} has no function to run; it only describes a schema")
        return args

    def invoke(self, input: Any, **kwargs: Any) -> Any:
        args = self._arguments(input)
        if self.returns_model:
            return args
        if inspect.iscoroutinefunction(self.func):
            from plait._bridge import run_coroutine
            return run_coroutine(self.func(**args))
        return self.func(**args)  # type: ignore[misc]

    async def ainvoke(self, input: Any, **kwargs: Any) -> Any:
        args = self._arguments(input)
        if self.returns_model:
            return args
        if inspect.iscoroutinefunction(self.func):
            return await self.func(**args)
        ctx = contextvars.copy_context()
        func = cast(Callable[..., Any], self.func)  # not None: _arguments checked it
        return await asyncio.get_running_loop().run_in_executor(None, lambda: ctx.run(func, **args))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation), so a decorated function stays usable."""
        if self.func is None:
            raise TypeError(f"Tool {self.name!r} has no function to call")
        return self.func(*args, **kwargs)


def tool(func: Callable[..., Any] | None = None, *, name: str | None = None,
         description: str | None = None) -> Any:
    """Decorator: turn a typed function into a :class:`Tool` (``@tool`` or ``@tool(name=...)``)."""
    if func is not None:
        return Tool.from_function(func, name=name, description=description)
    return lambda f: Tool.from_function(f, name=name, description=description)


def to_tool(obj: Any) -> Tool:
    """A Tool from a Tool, a function, a pydantic model class or an OpenAI-style tool dict."""
    if isinstance(obj, Tool):
        return obj
    if isinstance(obj, type) and issubclass(obj, BaseModel):
        return Tool.from_model(obj)
    if isinstance(obj, dict):
        fn = obj.get("function", obj) if obj.get("type", "function") == "function" else None
        if not fn or "name" not in fn:
            raise ValueError(f"A tool dict needs a 'name' (or the OpenAI form {{'type': 'function', "
                             f"'function': {{'name': ...}}}}), got keys {sorted(obj)}")
        return Tool(fn["name"], fn.get("description", ""), fn.get("parameters") or {"type": "object", "properties": {}})
    if callable(obj):
        return Tool.from_function(obj)
    raise TypeError(f"Cannot make a tool from {type(obj).__name__}: pass a function, a pydantic model class, "
                    "a Tool or an OpenAI tool dict")
