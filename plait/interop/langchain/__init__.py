"""LangChain interop: plait models, embeddings, stores and retrievers as first-class LangChain classes,
and LangChain pieces inside plait chains.

plait inside LangChain (each passes LangChain's own standard test suites, ``langchain-tests``):

- :class:`PlaitChatModel` (``model="local"`` / ``"openai:MODEL"`` / a plait ChatModel): a
  ``BaseChatModel`` with ``bind_tools``, ``with_structured_output``, streaming, usage metadata;
- :class:`PlaitEmbeddings` (``model="local"`` / ``"openai:MODEL"``): LangChain ``Embeddings``;
- :class:`PlaitVectorStore` (``collection_name=``, ``embedding=``, ``persist_directory=``): a
  ``VectorStore`` over plait's Chroma store with its BM25 twin;
- :class:`PlaitRetriever` (``vectorstore=`` or ``retriever=``, ``k=``, ``search_type="hybrid"``):
  a ``BaseRetriever``;
- :func:`to_langchain` picks the class above that fits a plait object (any other Runnable: a
  generic LangChain Runnable).

LangChain inside plait: :func:`from_langchain` wraps any LangChain Runnable (chat model,
retriever, prompt, chain) as a plait Runnable, and LangChain ``Embeddings`` as plait embeddings.
Values convert both ways (:mod:`plait.interop.langchain.convert`) and tokens stream through.

Example::

    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from plait.interop.langchain import PlaitChatModel

    chain = ChatPromptTemplate.from_template("{q}") | PlaitChatModel(model="local") | StrOutputParser()
    for token in chain.stream({"q": "hi"}):
        print(token, end="")
"""

from __future__ import annotations

from plait.interop.langchain.chat_model import PlaitChatModel
from plait.interop.langchain.convert import (
    from_lc,
    from_lc_chunk,
    from_lc_document,
    from_lc_message,
    to_lc,
    to_lc_chunk,
    to_lc_document,
    to_lc_message,
)
from plait.interop.langchain.embeddings import PlaitEmbeddings, embeddings_from_spec
from plait.interop.langchain.retriever import PlaitRetriever
from plait.interop.langchain.runnables import (
    LangChainEmbeddings,
    LangChainRunnable,
    PlaitRunnable,
    from_langchain,
    to_langchain,
)
from plait.interop.langchain.vectorstore import PlaitVectorStore

__all__ = [
    "LangChainEmbeddings",
    "LangChainRunnable",
    "PlaitChatModel",
    "PlaitEmbeddings",
    "PlaitRetriever",
    "PlaitRunnable",
    "PlaitVectorStore",
    "embeddings_from_spec",
    "from_langchain",
    "from_lc",
    "from_lc_chunk",
    "from_lc_document",
    "from_lc_message",
    "to_langchain",
    "to_lc",
    "to_lc_chunk",
    "to_lc_document",
    "to_lc_message",
]
