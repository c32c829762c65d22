"""plait: small composable Runnables for LLM apps.

``import plait`` is light: names are loaded on first use (PEP 562), so the package pulls in
nothing heavy until you ask for it; backends (Chroma, sentence-transformers, transformers,
diffusers, openai) are imported by the modules that use them, on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from plait._lazy import lazy_exports

if TYPE_CHECKING:
    from plait.chat_model import ChatModel, ChatOptions
    from plait.compose import Assign, Branch, Parallel, RunnableSequence
    from plait.messages import (
        AssistantChunk,
        AssistantMessage,
        ChatPromptValue,
        Document,
        ImageResult,
        Message,
        ProgressEvent,
        StringPromptValue,
        SystemMessage,
        ToolCall,
        ToolMessage,
        Usage,
        UserMessage,
    )
    from plait.models import chat_model_from_spec
    from plait.parsers import JsonOutputParser, OutputParserError, PydanticOutputParser, StrOutputParser
    from plait.prompts import (
        ChatPromptTemplate,
        FewShotChatPromptTemplate,
        FewShotPromptTemplate,
        MessagesPlaceholder,
        MissingVariableError,
        PromptTemplate,
    )
    from plait.runnable import Lambda, Passthrough, Runnable, coerce
    from plait.tools import Tool, tool
    from plait.wrappers import Fallbacks, Retry

_LAZY: dict[str, str] = {
    "Assign": "plait.compose",
    "AssistantChunk": "plait.messages",
    "AssistantMessage": "plait.messages",
    "Branch": "plait.compose",
    "ChatModel": "plait.chat_model",
    "ChatOptions": "plait.chat_model",
    "ChatPromptTemplate": "plait.prompts",
    "ChatPromptValue": "plait.messages",
    "Document": "plait.messages",
    "Fallbacks": "plait.wrappers",
    "FewShotChatPromptTemplate": "plait.prompts",
    "FewShotPromptTemplate": "plait.prompts",
    "ImageResult": "plait.messages",
    "JsonOutputParser": "plait.parsers",
    "Lambda": "plait.runnable",
    "Message": "plait.messages",
    "MessagesPlaceholder": "plait.prompts",
    "MissingVariableError": "plait.prompts",
    "OutputParserError": "plait.parsers",
    "Parallel": "plait.compose",
    "Passthrough": "plait.runnable",
    "ProgressEvent": "plait.messages",
    "PromptTemplate": "plait.prompts",
    "PydanticOutputParser": "plait.parsers",
    "Retry": "plait.wrappers",
    "Runnable": "plait.runnable",
    "RunnableSequence": "plait.compose",
    "StrOutputParser": "plait.parsers",
    "StringPromptValue": "plait.messages",
    "SystemMessage": "plait.messages",
    "Tool": "plait.tools",
    "ToolCall": "plait.messages",
    "ToolMessage": "plait.messages",
    "Usage": "plait.messages",
    "UserMessage": "plait.messages",
    "chat_model_from_spec": "plait.models",
    "coerce": "plait.runnable",
    "tool": "plait.tools",
}

__version__ = "0.1.0"

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
