"""LangChain interop: a plait model inside a LangChain chain, and LangChain pieces inside plait.

Run: python examples/langchain_interop.py
"""

from __future__ import annotations

import re
from typing import Any

from langchain_core.documents import Document as LCDocument
from langchain_core.output_parsers import StrOutputParser as LCStrOutputParser
from langchain_core.prompts import ChatPromptTemplate as LCChatPromptTemplate
from langchain_core.retrievers import BaseRetriever

from plait.chains.rag import RAGChain
from plait.interop.langchain import from_langchain, to_langchain

try:
    from examples._model import example_model
except ImportError:
    from _model import example_model  # type: ignore[no-redef]


class KeywordRetriever(BaseRetriever):
    """A plain LangChain retriever: documents sharing a word with the query."""

    docs: list[LCDocument]

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[LCDocument]:
        words = {w for w in re.findall(r"[a-z]+", query.lower()) if len(w) > 3}
        return [d for d in self.docs if words & set(re.findall(r"[a-z]+", d.page_content.lower()))]


def main(model: Any = None) -> tuple[str, Any]:
    plait_model = example_model(model, max_tokens=40)

    # 1. a plait chat model as a step of a LangChain (LCEL) chain, streamed
    lc_chain = (LCChatPromptTemplate.from_messages([("system", "Answer in one short sentence."), ("human", "{q}")])
                | to_langchain(plait_model) | LCStrOutputParser())
    print("LangChain chain with a plait model: ", end="")
    text = ""
    for token in lc_chain.stream({"q": "What colour is the sky on a clear day?"}):
        print(token, end="", flush=True)
        text += token
    print()

    # 2. a LangChain retriever inside a plait RAG chain (documents convert with their metadata)
    retriever = KeywordRetriever(docs=[
        LCDocument(page_content="The Eiffel Tower is in Paris and is 330 metres tall.",
                   metadata={"source": "landmarks.txt", "start": 0, "end": 52}),
        LCDocument(page_content="Big Ben is a clock tower in London.", metadata={"source": "london.txt"}),
    ])
    rag = RAGChain(from_langchain(retriever), plait_model)
    result = rag.invoke("How tall is the Eiffel Tower?")
    print(f"plait RAG over a LangChain retriever: {result.answer}")
    for s in result.citations:
        print(f"  [{s.number}] {s.label()}")
    return text, result


if __name__ == "__main__":
    main()
