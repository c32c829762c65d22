"""Checking and tokenizing OpenAI chat fine-tuning files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plait.tune.data import IGNORE, read_examples, tokenize
from tests.tune.conftest import conversation, write_jsonl


def test_bad_lines_are_reported_by_line_number(tmp_path: Path) -> None:
    good = conversation(0)
    rows: list[Any] = [
        good,                                                   # 1
        "{not json",                                            # 2
        {"prompt": "x", "completion": "y"},                     # 3 the old completions format
        {"messages": [{"role": "user", "content": "hi"}]},      # 4 nothing to train on
        {"messages": [{"role": "robot", "content": "hi"}]},     # 5
        {"messages": [{"role": "user", "content": "hi", "weight": 1},
                      {"role": "assistant", "content": "yo"}]},  # 6 weight on a user turn
        {"messages": [{"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "yo", "weight": 0}]},  # 7 every answer weighted out
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]},  # 8
        "",                                                     # 9 blank: skipped, not an error
        good,                                                   # 10
    ]
    report = read_examples(write_jsonl(tmp_path / "d.jsonl", rows))
    assert [line for line, _ in report.errors] == [2, 3, 4, 5, 6, 7, 8]
    messages = dict(report.errors)
    assert "not valid JSON" in messages[2] and "unknown keys" in messages[3]
    assert "no assistant message" in messages[4] and "'robot'" in messages[5]
    assert "only allowed on assistant" in messages[6] and "needs 'content' or 'tool_calls'" in messages[8]
    assert len(report.conversations) == 2
    assert "line 2: not valid JSON" in report.summary()


def test_only_assistant_turns_are_trained_on(tokenizer: Any) -> None:
    row = {"messages": [{"role": "user", "content": "Say one."}, {"role": "assistant", "content": "One."},
                        {"role": "user", "content": "Say two."}, {"role": "assistant", "content": "Two.", "weight": 0},
                        {"role": "user", "content": "Say three."}, {"role": "assistant", "content": "Three."}]}
    example = tokenize(tokenizer, row)
    # the ids are the whole conversation as the chat template renders it
    whole = tokenizer.apply_chat_template(row["messages"], tokenize=False)
    assert tokenizer.decode(example.ids) == whole
    trained = [t for t in example.labels if t != IGNORE]
    assert tokenizer.decode(trained) == "One.<|im_end|>\nThree.<|im_end|>\n"
    # each trained turn follows exactly the prompt the model sees when it answers
    second = tokenizer.apply_chat_template(row["messages"][:5], add_generation_prompt=True, tokenize=False)
    n = len(tokenizer(second)["input_ids"])
    assert example.ids[:n] == tokenizer(second)["input_ids"]
    assert example.labels[n] != IGNORE and example.labels[n - 1] == IGNORE


def test_tool_calls_are_trained_in_the_local_wire_form(tokenizer: Any) -> None:
    tools = [{"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                               "parameters": {"type": "object",
                                                              "properties": {"city": {"type": "string"}}}}}]
    row = {"tools": tools, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                               "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."}]}
    example = tokenize(tokenizer, row)
    trained = tokenizer.decode([t for t in example.labels if t != IGNORE])
    assert trained == '{"tool": "weather", "arguments": {"city": "Paris"}}<|im_end|>\nIt is sunny.<|im_end|>\n'
    prompt = tokenizer.decode(example.ids)
    assert "You can call these tools" in prompt and "Result of the weather tool call: sunny" in prompt


def test_token_counts_and_cutting(tmp_path: Path, tokenizer: Any) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [conversation(i) for i in range(3)])
    report = read_examples(path, tokenizer)
    first = tokenizer.apply_chat_template(conversation(0)["messages"], tokenize=True)
    first = first["input_ids"] if hasattr(first, "keys") else first
    assert len(report.examples[0].ids) == len(first)
    assert report.figures()["tokens"] == report.total_tokens > report.trained_tokens > 0
    cut = read_examples(path, tokenizer, max_length=len(first) - 2)
    assert cut.too_long == [1, 2, 3] and all(len(e.ids) == len(first) - 2 for e in cut.examples)
    none_left = read_examples(path, tokenizer, max_length=10)
    assert [line for line, _ in none_left.errors] == [1, 2, 3]
    assert json.dumps(report.figures())
