"""Read and check a chat fine-tuning file (OpenAI's format) and turn it into training tokens.

The file has one JSON object per line, ``{"messages": [...]}``, optionally with ``"tools": [...]``,
the format of OpenAI's chat fine-tuning (so existing files can be reused). Checks, each reported
with its line number: the line is a JSON object; ``messages`` is a non-empty list of
``{"role", "content"}`` with a known role; an assistant message has text or ``tool_calls``;
``weight`` (assistant messages only) is 0 or 1; at least one assistant message is trained on.

What is trained on: the assistant turns only (with ``weight`` 0 an assistant turn is context, not a
target), each turn's text through the end-of-turn token, exactly as the model would produce it after
the prompt that plait renders at inference (the tokenizer's chat template, tool instructions and tool
history written the way :mod:`plait.prompted_tools` writes them for local models).

Example::

    from plait.tune.data import read_examples
    report = read_examples("train.jsonl", tokenizer)   # tokenizer: optional, for token counts
    print(report.summary())
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
_MESSAGE_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "weight"}
IGNORE = -100  # the label of a token that is not trained on (torch's cross-entropy ignore_index)


class DataError(ValueError):
    """The fine-tuning file has lines that cannot be trained on."""


@dataclass
class Example:
    """One conversation: its line, the token ids, and the labels (``IGNORE`` where not trained on)."""

    line: int
    ids: list[int]
    labels: list[int]

    @property
    def trained(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


@dataclass
class DataReport:
    """What :func:`read_examples` found: the examples, the bad lines and the token counts."""

    path: str
    conversations: list[dict[str, Any]] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    too_long: list[int] = field(default_factory=list)  # lines cut to max_length
    max_length: int | None = None

    @property
    def total_tokens(self) -> int:
        return sum(len(e.ids) for e in self.examples)

    @property
    def trained_tokens(self) -> int:
        return sum(e.trained for e in self.examples)

    def figures(self) -> dict[str, Any]:
        lengths = [len(e.ids) for e in self.examples]
        return {"examples": len(self.conversations), "bad_lines": len(self.errors),
                "tokens": self.total_tokens, "trained_tokens": self.trained_tokens,
                "max_tokens": max(lengths, default=0),
                "mean_tokens": round(statistics.fmean(lengths), 1) if lengths else 0.0,
                "cut_to_max_length": len(self.too_long)}

    def summary(self) -> str:
        """A few lines for people: counts, tokens, what is trained on, and the bad lines."""
        f = self.figures()
        lines = [f"{self.path}: {f['examples']} conversations, {f['bad_lines']} bad lines"]
        if self.examples:
            lines.append(f"tokens: {f['tokens']} in all, {f['trained_tokens']} trained on (assistant turns only); "
                         f"per conversation mean {f['mean_tokens']}, max {f['max_tokens']}")
        if self.too_long:
            lines.append(f"{len(self.too_long)} conversations are longer than {self.max_length} tokens and are cut "
                         f"(lines {', '.join(map(str, self.too_long[:10]))}{' ...' if len(self.too_long) > 10 else ''})")
        for line, message in self.errors[:20]:
            lines.append(f"  line {line}: {message}")
        if len(self.errors) > 20:
            lines.append(f"  ... and {len(self.errors) - 20} more bad lines")
        return "\n".join(lines)


def check_conversation(row: Any) -> str | None:
    """Why a parsed line cannot be trained on, or None when it can."""
    if not isinstance(row, dict):
        return "not a JSON object"
    if set(row) - {"messages", "tools", "parallel_tool_calls", "functions"}:
        return f"unknown keys {sorted(set(row) - {'messages', 'tools', 'parallel_tool_calls', 'functions'})}"
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    if "tools" in row and not isinstance(row["tools"], list):
        return "'tools' must be a list of tool definitions"
    trained = 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return f"message {i} is not an object"
        if m.get("role") not in ROLES:
            return f"message {i} has role {m.get('role')!r}: use one of {', '.join(ROLES)}"
        if extra := set(m) - _MESSAGE_KEYS:
            return f"message {i} has unknown keys {sorted(extra)}"
        content, calls = m.get("content"), m.get("tool_calls")
        if content is not None and not isinstance(content, str):
            return f"message {i}: 'content' must be text"
        if m["role"] == "assistant":
            if not content and not calls:
                return f"message {i}: an assistant message needs 'content' or 'tool_calls'"
            if calls is not None and not (isinstance(calls, list) and all(
                    isinstance(c, dict) and isinstance(c.get("function"), dict) and c["function"].get("name")
                    for c in calls)):
                return f"message {i}: each tool call needs a 'function' with a 'name'"
            weight = m.get("weight", 1)
            if weight not in (0, 1):
                return f"message {i}: 'weight' must be 0 or 1, not {weight!r}"
            trained += weight
        elif "weight" in m:
            return f"message {i}: 'weight' is only allowed on assistant messages"
        elif content is None:
            return f"message {i}: 'content' is missing"
    if not trained:
        return "no assistant message to train on (add one, or set its weight to 1)"
    return None


def render(tokenizer: Any, turns: list[dict[str, str]], generation_prompt: bool) -> str:
    """The prompt text plait's local chat model builds (see ``engine.Engine.render``)."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(turns, add_generation_prompt=generation_prompt, tokenize=False))
    text = "".join(f"{t['role']}: {t['content']}\n" for t in turns)
    return text + "assistant:" if generation_prompt else text


def _plain_turns(row: dict[str, Any]) -> tuple[list[dict[str, str]], list[bool]]:
    """The conversation as local models see it (tool calls and results as text), and which turns are trained."""
    from plait import prompted_tools as pt
    from plait.messages import message_from
    from plait.tools import to_tool

    raw = row["messages"]
    messages = pt.flatten_tool_history([message_from({k: v for k, v in m.items() if k != "weight"}) for m in raw])
    if row.get("tools"):
        messages = pt.add_system(messages, pt.tool_instructions([to_tool(t) for t in row["tools"]], "auto",
                                                                row.get("parallel_tool_calls") is not False))
    shift = len(messages) - len(raw)  # add_system may put a system message first
    trained = [False] * shift + [m["role"] == "assistant" and m.get("weight", 1) == 1 for m in raw]
    return [{"role": m.role, "content": m.content} for m in messages], trained


def tokenize(tokenizer: Any, row: dict[str, Any], line: int = 0) -> Example:
    """Token ids and labels of one conversation: labels only on the trained assistant turns."""
    turns, trained = _plain_turns(row)
    ids: list[int] = []
    labels: list[int] = []
    done = ""  # the text tokenized so far
    for i, turn in enumerate(turns):
        if turn["role"] != "assistant":
            continue
        prompt = render(tokenizer, turns[:i], True)
        full = render(tokenizer, turns[:i + 1], False)
        if not (prompt.startswith(done) and full.startswith(prompt)):
            raise DataError(f"line {line}: the chat template does not render this conversation turn by turn "
                            "(each prefix must render as the start of the whole); it cannot be trained on")
        for text, train in ((prompt[len(done):], False), (full[len(prompt):], trained[i])):
            piece = tokenizer(text, add_special_tokens=not ids)["input_ids"] if text else []
            ids += piece
            labels += piece if train else [IGNORE] * len(piece)
        done = full
    return Example(line, ids, labels)


def read_examples(path: str | os.PathLike[str], tokenizer: Any = None, max_length: int | None = None) -> DataReport:
    """Check every line of a fine-tuning file; with a tokenizer, also tokenize (see the module docstring).

    Bad lines are collected, not raised: the report lists them by line number.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Training file not found: {p}. Pass a JSONL file with one "
                                '{"messages": [...]} object per line.')
    report = DataReport(str(p), max_length=max_length)
    with open(p, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                report.errors.append((number, f"not valid JSON ({e.msg} at column {e.colno})"))
                continue
            problem = check_conversation(row)
            if problem:
                report.errors.append((number, problem))
                continue
            if tokenizer is not None:
                try:
                    example = tokenize(tokenizer, row, number)
                except (DataError, ValueError) as e:
                    report.errors.append((number, str(e).removeprefix(f"line {number}: ")))
                    continue
                if max_length and len(example.ids) > max_length:
                    report.too_long.append(number)
                    example = Example(number, example.ids[:max_length], example.labels[:max_length])
                if not example.trained:
                    report.errors.append((number, "nothing left to train on after cutting to max_length"))
                    continue
                report.examples.append(example)
            report.conversations.append(row)
    return report
