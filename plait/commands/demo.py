"""``plait demo``: the main job on embedded defaults.

Placeholder until the RAG chain lands: runs a real composed chain (prompt | model | parser)
with streaming and tracing on the scripted model.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", action="store_true", help="print the tree of steps with timings")


def run(args: argparse.Namespace) -> int:
    from plait import ChatPromptTemplate, StrOutputParser
    from plait.fake import FakeChatModel

    prompt = ChatPromptTemplate.from_messages([("system", "You are terse."), ("user", "{question}")])
    chain = prompt | FakeChatModel(["plait composes prompts, retrievers and models with |."]) | StrOutputParser()
    if args.trace:
        chain = chain.with_tracing(verbose=True)
    for token in chain.stream({"question": "What is plait?"}):
        print(token, end="", flush=True)
    print()
    return 0
