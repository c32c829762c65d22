"""A plait chat model and a plait retriever inside a LangGraph ``StateGraph``.

The graph: ``agent`` (the model must call the ``search_notes`` tool: ``tool_choice="any"``) ->
``tools`` (LangGraph's own ``ToolNode`` runs the tool: plait's hybrid retrieval over a
``PlaitVectorStore``) -> ``answer`` (the model answers from what the tool found) -> end.
Everything LangGraph touches is a LangChain object: ``PlaitChatModel``, ``PlaitRetriever``.

The bundled 135M model always makes the call (the tool choice is enforced while it decodes), but
what it searches for and answers is often poor; hybrid retrieval usually still finds the right
note. ``--model openai:MODEL`` runs the same graph on a real model.

Run: python examples/langgraph_agent.py [--model SPEC]   (needs ``pip install langgraph``)
"""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from plait.interop.langchain import PlaitChatModel, PlaitRetriever, PlaitVectorStore

try:
    from examples._model import example_model
except ImportError:
    from _model import example_model  # type: ignore[no-redef]

NOTES = [
    "The office opens at 8 am and closes at 6 pm on weekdays.",
    "Every employee has 25 vacation days per year.",
    "The cafeteria serves lunch from noon to 2 pm.",
    "Parking permits are handed out by the front desk.",
]


def build_graph(llm: Any, retriever: PlaitRetriever) -> Any:
    """agent -> tools -> answer, as a compiled LangGraph graph."""

    @tool
    def search_notes(question: str) -> str:
        """Search the company notes.

        Args:
            question: the user's question, word for word.
        """
        return "\n".join(f"- {d.page_content}" for d in retriever.invoke(question))

    def agent(state: MessagesState) -> dict[str, Any]:
        # 1. the model must ask for a search (a tool call), whatever it would rather say
        return {"messages": [llm.bind_tools([search_notes], tool_choice="any").invoke(state["messages"])]}

    def answer(state: MessagesState) -> dict[str, Any]:
        # 2. the model answers from the search results, with no tools bound
        question = next(m for m in state["messages"] if isinstance(m, HumanMessage))
        found = "\n".join(str(m.content) for m in state["messages"] if isinstance(m, ToolMessage))
        prompt = [SystemMessage("Answer the question in one sentence, from the notes."),
                  HumanMessage(f"Notes:\n{found}\n\nQuestion: {question.content}")]
        return {"messages": [llm.invoke(prompt)]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([search_notes]))
    graph.add_node("answer", answer)
    graph.add_edge(START, "agent")
    graph.add_edge("agent", "tools")
    graph.add_edge("tools", "answer")
    graph.add_edge("answer", END)
    return graph.compile()


def main(llm: Any = None, question: str = "How many vacation days do I get?") -> dict[str, Any]:
    llm = llm or PlaitChatModel(model=example_model(temperature=0, max_tokens=60))
    store = PlaitVectorStore(collection_name=f"notes-{uuid.uuid4().hex[:8]}")  # in memory, bundled MiniLM
    store.add_documents([Document(page_content=text, metadata={"source": "notes.md"}) for text in NOTES])
    retriever = PlaitRetriever(vectorstore=store, k=2, search_type="hybrid")
    try:
        state = build_graph(llm, retriever).invoke({"messages": [HumanMessage(question)]})
    finally:
        store.delete_collection()
    for message in state["messages"]:
        if isinstance(message, AIMessage) and message.tool_calls:
            call = message.tool_calls[0]
            print(f"agent  > calls {call['name']}({call['args']})")
        elif isinstance(message, ToolMessage):
            print(f"tools  > {message.content}")
        elif isinstance(message, AIMessage):
            print(f"answer > {message.content}")
        else:
            print(f"user   > {message.content}")
    return state


if __name__ == "__main__":
    main()
