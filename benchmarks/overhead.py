"""Per-call overhead of plait vs langchain-core on the same chains with fake models that do no work.

Chains (built in both frameworks, in one run):
  prompt_model_parser  ChatPromptTemplate | fake chat model | string parser
  three_lambdas        three identity lambdas
  rag                  {"context": retriever-lambda, "question": passthrough} | prompt | model | parser
  batch_1000           batch of 1,000 inputs through prompt | model | parser (microseconds per item)
plus the import time of ``import plait`` vs ``from langchain_core.runnables import Runnable``
(fresh subprocesses, median of 5).

Usage: python benchmarks/overhead.py [--quick]
Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any


def best_us(fn: Callable[[], Any], n: int, repeat: int = 5) -> float:
    """Best-of-``repeat`` mean microseconds per call over ``n`` calls (min filters scheduler noise)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t) / n * 1e6)
    return min(times)


def import_ms(stmt: str, runs: int = 5) -> float:
    code = f"import time; t=time.perf_counter(); {stmt}; print((time.perf_counter()-t)*1000)"
    values = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   check=True).stdout.strip()) for _ in range(runs)]
    return statistics.median(values)


def plait_chains() -> dict[str, Any]:
    from plait import ChatPromptTemplate, Lambda, Passthrough, StrOutputParser
    from plait.fake import FakeChatModel

    prompt = ChatPromptTemplate.from_messages([("system", "You are helpful."), ("user", "{question}")])
    model = FakeChatModel(["The answer is 42."])
    rag_prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context:\n{context}"), ("user", "{question}")])
    docs = "doc one\n\ndoc two"
    return {
        "prompt_model_parser": prompt | model | StrOutputParser(),
        "three_lambdas": Lambda(lambda x: x) | (lambda x: x) | (lambda x: x),
        "rag": {"context": Lambda(lambda q: docs), "question": Passthrough()} | rag_prompt | model | StrOutputParser(),
    }


def lc_chains() -> dict[str, Any]:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    prompt = ChatPromptTemplate.from_messages([("system", "You are helpful."), ("human", "{question}")])
    model = FakeListChatModel(responses=["The answer is 42."])
    rag_prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context:\n{context}"), ("human", "{question}")])
    docs = "doc one\n\ndoc two"
    return {
        "prompt_model_parser": prompt | model | StrOutputParser(),
        "three_lambdas": RunnableLambda(lambda x: x) | (lambda x: x) | (lambda x: x),
        "rag": {"context": RunnableLambda(lambda q: docs), "question": RunnablePassthrough()}
        | rag_prompt | model | StrOutputParser(),
    }


INPUTS = {"prompt_model_parser": {"question": "What is the answer?"}, "three_lambdas": 1, "rag": "What is the answer?"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    args = ap.parse_args()
    n_plait, n_lc, n_batch = (2000, 200, 1000) if args.quick else (20000, 1000, 1000)

    plait, lc = plait_chains(), lc_chains()
    for name, x in INPUTS.items():  # same results in both frameworks
        assert plait[name].invoke(x) == lc[name].invoke(x), name

    figures: dict[str, Any] = {}
    rows = []
    for name, x in INPUTS.items():
        p = best_us(lambda c=plait[name], x=x: c.invoke(x), n_plait)
        lc_us = best_us(lambda c=lc[name], x=x: c.invoke(x), n_lc)
        figures[f"{name}_us"], figures[f"lc_{name}_us"] = round(p, 2), round(lc_us, 1)
        rows.append((name, p, lc_us))

    batch_in = [{"question": f"q{i}"} for i in range(n_batch)]
    p = best_us(lambda: plait["prompt_model_parser"].batch(batch_in), 1, repeat=5) / n_batch
    lc_us = best_us(lambda: lc["prompt_model_parser"].batch(batch_in), 1, repeat=3) / n_batch
    figures["batch_1000_us"], figures["lc_batch_1000_us"] = round(p, 2), round(lc_us, 1)
    rows.append(("batch_1000 (per item)", p, lc_us))

    figures["import_ms"] = round(import_ms("import plait"), 2)
    figures["core_import_ms"] = round(import_ms(
        "from plait import ChatPromptTemplate, StrOutputParser, Runnable; import plait.fake"), 2)
    figures["lc_import_ms"] = round(import_ms("from langchain_core.runnables import Runnable"), 2)

    print(f"{'chain':<24}{'plait us':>12}{'langchain us':>15}{'ratio':>9}")
    for name, p, lc_us in rows:
        print(f"{name:<24}{p:>12.2f}{lc_us:>15.1f}{lc_us / p:>9.1f}x")
    print(f"{'import plait':<24}{figures['import_ms']:>10.1f}ms{figures['lc_import_ms']:>13.1f}ms")
    print(f"{'import plait core*':<24}{figures['core_import_ms']:>10.1f}ms   (*prompts, parsers, fake model)")
    ratios = {name: lc_us / p for name, p, lc_us in rows}
    figures["ratios"] = {k: round(v, 1) for k, v in ratios.items()}
    figures["ratio_min"] = round(min(ratios.values()), 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
