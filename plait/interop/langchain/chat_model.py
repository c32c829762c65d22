"""A plait chat model as a real LangChain ``BaseChatModel``.

``PlaitChatModel(model="local")`` is the bundled SmolLM2, ``PlaitChatModel(model="openai:MODEL",
base_url=...)`` any OpenAI-compatible server (``plait serve`` included), and
``PlaitChatModel(model=<plait ChatModel>)`` wraps a model you built. Whatever LangChain expects of a
chat model works: ``invoke`` / ``stream`` / ``batch`` and their async twins, ``bind_tools`` (plait
tools and LangChain tools), ``with_structured_output`` (``json_schema``, ``function_calling``,
``json_mode``), usage metadata, ``stop``, callbacks and ``astream_events``, LangGraph and agents.

The work is done by plait's :class:`~plait.chat_model.ChatModel` API: tools and the tool choice
become its ``tools`` / ``tool_choice`` options, structured output its ``response_format`` option
or a forced tool call, so a backend without native tools or JSON output gets them by prompting
(or by constrained decoding, where the backend has it).

Constructor arguments: ``model``; the generation options every plait backend knows
(``temperature``, ``max_tokens``, ``stop``) and any other option of the backend (``top_p``,
``seed``, ``frequency_penalty``...: checked when the object is built, an unknown one is an
error); for ``openai:`` specs also ``base_url``, ``api_key``, ``timeout``, ``max_retries``
(LangChain's standard names; a local model runs in this process and ignores ``api_key``,
``timeout`` and ``max_retries``). Every ``PlaitChatModel`` of a process with the same ``local`` spec
shares one loaded model (LangChain code builds chat models freely; the weights load once). A model
given by spec string serializes with LangChain's ``dumpd`` and loads back with
``load(..., valid_namespaces=["plait"], allowed_objects=[PlaitChatModel])``.

Example::

    from plait.interop.langchain import PlaitChatModel

    llm = PlaitChatModel(model="local", temperature=0, max_tokens=64)
    llm.invoke("What is the capital of France?").content
    llm.bind_tools([get_weather], tool_choice="any").invoke("Weather in Paris?").tool_calls
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from plait.chat_model import ChatModel
from plait.interop.langchain.convert import from_lc_message, to_lc_chunk, to_lc_message
from plait.messages import AssistantChunk, AssistantMessage, Message
from plait.tools import Tool

METHODS = ("json_schema", "function_calling", "json_mode")

# Local models by spec, shared by every PlaitChatModel of the process (weights load once, on first use;
# requests queue on the model's own lock). Options are per PlaitChatModel, never stored on the model.
_LOCAL: dict[str, ChatModel] = {}
_LOCAL_LOCK = threading.Lock()


def _openai_tool(tool: Any) -> dict[str, Any]:
    """A tool in the OpenAI wire form, which plait's ``tools`` option takes."""
    if isinstance(tool, Tool):
        return tool.to_openai()
    return convert_to_openai_tool(tool)


def _tool_choice(choice: Any) -> str | None:
    """LangChain's tool choices in plait's words: "any" / True -> "required", a dict -> the tool's name."""
    if choice is None:
        return None
    if choice is True or choice == "any":
        return "required"
    if choice is False:
        return "none"
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if not name:
            raise ValueError(f"tool_choice {choice!r} names no tool: use 'auto', 'any', 'none' or a tool name")
        return str(name)
    if isinstance(choice, str):
        return choice
    raise TypeError(f"tool_choice must be a string, a bool or a dict, not {type(choice).__name__}")


class PlaitChatModel(BaseChatModel):
    """A plait chat model (``"local"``, ``"openai:MODEL"`` or a ``ChatModel``) as a LangChain chat model.

    See the module docstring for the arguments. Example::

        llm = PlaitChatModel(model="local", max_tokens=64)
        for chunk in llm.stream("Tell me a joke"):
            print(chunk.content, end="")
    """

    model: Any = "local"
    """A spec string (``local``, ``local:PATH_OR_ID``, ``openai:MODEL``) or a plait ``ChatModel``."""
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    base_url: str | None = None
    """``openai:`` specs: the server, e.g. ``http://127.0.0.1:8000/v1`` (else ``OPENAI_BASE_URL``)."""
    api_key: SecretStr | None = None
    """``openai:`` specs: the key (else ``OPENAI_API_KEY``)."""
    timeout: float | None = None
    max_retries: int | None = None
    streaming: bool = False
    """Whether ``invoke`` streams underneath (so streaming callbacks see each token)."""
    n: int | None = Field(default=None, ge=1)
    """Replies per prompt (None: 1), as ChatOpenAI's ``n``: ``generate`` returns ``n`` generations, made in one
    request (one batched decode for the local model); the backend must support it (``supports_n``)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other generation options of the backend (``top_p``, ``seed``...); given as plain keywords."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)
    _plait: ChatModel = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _gather_options(cls, values: Any) -> Any:
        """Keywords that are not fields are backend options: they go into ``model_kwargs``."""
        if not isinstance(values, dict):
            return values
        fields = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
        extra = {k: v for k, v in values.items() if k not in fields}
        if not extra:
            return values
        given = dict(values.get("model_kwargs") or {})
        twice = sorted(set(extra) & set(given))
        if twice:
            raise ValueError(f"Options given both as keywords and in model_kwargs: {twice}")
        return {**{k: v for k, v in values.items() if k in fields}, "model_kwargs": {**given, **extra}}

    @model_validator(mode="after")
    def _build(self) -> PlaitChatModel:
        self._plait = self._resolve()
        self._plait.validate_options(self._options(None, {}))  # an unknown option fails here, not on first call
        return self

    def _resolve(self) -> ChatModel:
        if isinstance(self.model, ChatModel):
            if self.base_url or self.api_key:
                raise ValueError("base_url and api_key go with a spec string ('openai:MODEL'); a ChatModel "
                                 "object was built with its own settings")
            return self.model
        if not isinstance(self.model, str):
            raise TypeError(f"model must be a spec string ('local', 'openai:MODEL') or a plait ChatModel, "
                            f"not {type(self.model).__name__}")
        from plait.models import chat_model_from_spec

        kwargs: dict[str, Any] = {}
        if self.model.strip().startswith("openai:"):
            # As LangChain's OpenAI models do: the settings read from the environment show on the object.
            if self.api_key is None and os.environ.get("OPENAI_API_KEY"):
                self.api_key = SecretStr(os.environ["OPENAI_API_KEY"])
            if self.base_url is None and os.environ.get("OPENAI_BASE_URL"):
                self.base_url = os.environ["OPENAI_BASE_URL"]
            if self.base_url:
                kwargs["base_url"] = self.base_url
            if self.api_key is not None:
                kwargs["api_key"] = self.api_key.get_secret_value()
            if self.timeout is not None:
                kwargs["timeout"] = self.timeout
            if self.max_retries is not None:
                kwargs["max_retries"] = self.max_retries
            return chat_model_from_spec(self.model, **kwargs)
        if self.base_url:
            raise ValueError(f"base_url is for 'openai:MODEL' specs; {self.model!r} runs in this process")
        with _LOCAL_LOCK:  # one loaded model per spec and process: LangChain code builds chat models freely
            model = _LOCAL.get(self.model.strip())
            if model is None:
                model = _LOCAL[self.model.strip()] = chat_model_from_spec(self.model)
        return model

    # --- what LangChain reads about the model ------------------------------------------------------
    @property
    def plait_model(self) -> ChatModel:
        """The plait chat model doing the work."""
        return self._plait

    @property
    def model_name(self) -> str:
        return self._plait.model_name

    @property
    def _llm_type(self) -> str:
        return "plait-chat"

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        return ["plait", "interop", "langchain"]

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "OPENAI_API_KEY"}

    @property
    def _identifying_params(self) -> dict[str, Any]:
        spec = self.model if isinstance(self.model, str) else repr(self.model)
        return {"model": spec, "model_name": self.model_name, **self._options(None, {})}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        options = self._options(stop, kwargs)
        params = LangSmithParams(ls_provider="plait", ls_model_name=str(kwargs.get("model") or self.model_name),
                                 ls_model_type="chat")
        if options.get("temperature") is not None:
            params["ls_temperature"] = options["temperature"]
        if options.get("max_tokens") is not None:
            params["ls_max_tokens"] = options["max_tokens"]
        if options.get("stop"):
            params["ls_stop"] = list(options["stop"])
        return params

    # --- generation ----------------------------------------------------------------------------
    def _options(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The plait options of one call: the constructor's, then the call's (``stop`` included)."""
        options: dict[str, Any] = {k: v for k, v in (("temperature", self.temperature),
                                                     ("max_tokens", self.max_tokens)) if v is not None}
        if self.stop:
            options["stop"] = list(self.stop)
        options.update(self.model_kwargs)
        if stop:
            options["stop"] = list(stop)
        options.update(kwargs)
        return options

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        n = kwargs.pop("n", None) or self.n or 1
        if n > 1:
            return _result(*self._plait.generate(_messages(messages), n=n, **self._options(stop, kwargs)))
        msg = self._plait.invoke(_messages(messages), **self._options(stop, kwargs))
        return _result(msg)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        n = kwargs.pop("n", None) or self.n or 1
        if n > 1:  # plait's generate(n=) is synchronous: in a worker thread
            from langchain_core.runnables.config import run_in_executor

            return await run_in_executor(None, self._generate, messages, stop, None, n=n, **kwargs)
        msg = await self._plait.ainvoke(_messages(messages), **self._options(stop, kwargs))
        return _result(msg)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        _one_choice(kwargs.pop("n", None) or self.n or 1)
        named = False
        for chunk in self._plait.stream(_messages(messages), **self._options(stop, kwargs)):
            out, named = _chunk(chunk, named)
            yield out

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        _one_choice(kwargs.pop("n", None) or self.n or 1)
        named = False
        async for chunk in self._plait.astream(_messages(messages), **self._options(stop, kwargs)):
            out, named = _chunk(chunk, named)
            yield out

    # --- tools and structured output -------------------------------------------------------------
    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool | Tool], *,
                   tool_choice: str | bool | dict[str, Any] | None = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """This model with ``tools`` it may call: plait :class:`~plait.tools.Tool` objects, LangChain tools,
        functions, pydantic models or tool dicts.

        ``tool_choice``: ``"auto"``, ``"none"``, ``"any"`` / ``"required"`` / ``True`` (some tool must
        be called) or a tool's name. Running the tools is the caller's business (an agent, a
        LangGraph ``ToolNode``).
        """
        formatted = [_openai_tool(t) for t in tools]
        choice = _tool_choice(tool_choice)
        if choice is not None:
            kwargs["tool_choice"] = choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(self, schema: dict[str, Any] | type, *,
                               method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
                               include_raw: bool = False, strict: bool | None = None,
                               **kwargs: Any) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """A Runnable answering with an instance of ``schema`` (a pydantic class) or a dict (a TypedDict,
        a JSON schema or an OpenAI tool dict).

        ``method``: ``"json_schema"`` (plait's ``response_format`` with the schema; default),
        ``"function_calling"`` (the schema as the one tool the model must call) or ``"json_mode"``
        (JSON of any shape: describe the fields in the prompt). ``include_raw=True`` returns
        ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}`` instead of raising on a bad answer.
        """
        if kwargs:
            raise ValueError(f"Unknown with_structured_output arguments: {sorted(kwargs)}")
        if method not in METHODS:
            raise ValueError(f"Unknown structured-output method {method!r}: use one of {', '.join(METHODS)}")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        tool = convert_to_openai_tool(schema)
        name = tool["function"]["name"]
        trace = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        parser: Runnable[Any, Any]
        if method == "function_calling":
            llm = self.bind_tools([schema], tool_choice=name, ls_structured_output_format=trace)
            parser = (PydanticToolsParser(tools=[schema], first_tool_only=True) if is_pydantic  # type: ignore[list-item]
                      else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True))
        else:
            response_format: dict[str, Any] = {"type": "json_object"}
            if method == "json_schema":
                response_format = {"type": "json_schema", "json_schema": {
                    "name": name, "schema": tool["function"]["parameters"], "strict": bool(strict)}}
                if tool["function"].get("description"):
                    response_format["json_schema"]["description"] = tool["function"]["description"]
            llm = self.bind(response_format=response_format, ls_structured_output_format=trace)
            parser = PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()  # type: ignore[arg-type]
        if not include_raw:
            return llm | parser
        parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        no_parse = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parse.with_fallbacks([no_parse], exception_key="parsing_error")


# --- conversions ---------------------------------------------------------------------------------
def _messages(messages: list[BaseMessage]) -> list[Message]:
    return [from_lc_message(m) for m in messages]


def _result(*msgs: AssistantMessage) -> ChatResult:
    """One ChatGeneration per reply (``n`` of them for ``n`` choices)."""
    generations = [ChatGeneration(message=to_lc_message(m),
                                  generation_info={"finish_reason": m.finish_reason} if m.finish_reason else None)
                   for m in msgs]
    return ChatResult(generations=generations, llm_output={"model_name": msgs[0].model} if msgs[0].model else None)


def _one_choice(n: int) -> None:
    if n > 1:
        raise ValueError(f"n={n} does not stream through LangChain (a stream is one reply); call generate() "
                         f"for {n} replies, or the plait model's stream_choices()")


def _chunk(chunk: AssistantChunk, named: bool) -> tuple[ChatGenerationChunk, bool]:
    """A plait chunk as a LangChain generation chunk. The model name goes out once per stream:
    LangChain adds chunks' metadata strings together, and backends may repeat it on the last chunk."""
    message: AIMessageChunk = to_lc_chunk(chunk)
    if named:
        message.response_metadata.pop("model_name", None)
    return ChatGenerationChunk(message=message), named or chunk.model is not None
