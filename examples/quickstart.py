"""Quickstart: a prompt, a chat model and a parser composed with |, streamed token by token.

Run: python examples/quickstart.py [--model local | --model openai:MODEL]
"""

from __future__ import annotations

from typing import Any

from plait import ChatPromptTemplate, StrOutputParser

try:
    from examples._model import example_model
except ImportError:  # run as a script from the examples folder
    from _model import example_model  # type: ignore[no-redef]


def main(model: Any = None) -> str:
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You are a concise assistant. Answer in one sentence."),
        ("user", "{question}"),
    ])
    chain = prompt | example_model(model, max_tokens=48) | StrOutputParser()
    answer = ""
    for token in chain.stream({"question": "What is the capital of France?"}):
        print(token, end="", flush=True)
        answer += token
    print()
    # the same chain, many inputs at once
    for out in chain.batch([{"question": "Name a primary colour."}, {"question": "What is 2 + 2?"}]):
        print("-", out.strip())
    return answer


if __name__ == "__main__":
    main()
