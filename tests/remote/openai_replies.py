"""What the test server answers when no reply is scripted: a stand-in for a model.

Deterministic rules: where the request forces a tool (``tool_choice``, or plait's prompted
"You must call the tool 'X' now."), a call to it; where it asks for JSON output
(``response_format``, or plait's prompted "matches this JSON schema:"), an object fitting the
schema; else an echo of the last user message. Values are read literally from the request
(:func:`fill`), so tests can say what the "model" should answer.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    content: str | None = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"name", "arguments": dict}
    finish_reason: str | None = None


def default_reply(body: dict[str, Any]) -> Reply:
    """The reply to a chat request with nothing scripted."""
    last = next((m for m in reversed(body["messages"]) if m.get("role") == "user"), {"content": ""})
    text = last.get("content")
    if isinstance(text, list):  # content parts
        text = " ".join(p.get("text", "") for p in text if isinstance(p, dict))
    forced = _forced_tool(body)
    if forced is not None:  # a forced tool call: native (tool_choice) or asked for in the prompt
        name, params, native = forced
        call = {"name": name, "arguments": fill(params, str(text))}
        if native:
            return Reply(None, tool_calls=[call])
        return Reply(json.dumps({"tool": name, "arguments": call["arguments"]}))
    schema = _asked_schema(body)
    if schema is not None:  # JSON output: native response_format, or asked for in the prompt
        return Reply(json.dumps(fill(schema, str(text))))
    return Reply(f"You said: {text}")


_PROMPTED_CHOICE = re.compile(r"You must call the tool '([\w-]+)' now\.")


def _forced_tool(body: dict[str, Any]) -> tuple[str, dict[str, Any], bool] | None:
    """Which tool the request forces, if any: (name, parameters schema, whether natively)."""
    tools = {t["function"]["name"]: t["function"].get("parameters", {}) for t in body.get("tools") or []}
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("function", {}).get("name") in tools:
        return choice["function"]["name"], tools[choice["function"]["name"]], True
    if choice == "required" and tools:
        name = next(iter(tools))
        return name, tools[name], True
    system = " ".join(str(m.get("content")) for m in body["messages"] if m.get("role") == "system")
    m = _PROMPTED_CHOICE.search(system)
    if m:  # plait's prompted tools: the tool specs are JSON lines in the system message
        for line in system.splitlines():
            if line.startswith("{") and f'"name": "{m.group(1)}"' in line:
                return m.group(1), json.loads(line).get("parameters", {}), False
    return None


_PROMPTED_SCHEMA = re.compile(r"matches this JSON schema:\n(\{.*\})", re.DOTALL)


def _asked_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema the answer must fit, if the request asks for one."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return fmt.get("json_schema", {}).get("schema", {})
    system = " ".join(str(m.get("content")) for m in body["messages"] if m.get("role") == "system")
    m = _PROMPTED_SCHEMA.search(system)
    return json.loads(m.group(1)) if m else None


def fill(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """Values for the required fields, read literally from the request.

    A string field ``f`` takes the capitalised word after "f is" ("the city is Paris"), else the
    last capitalised word of the request; numbers are 0, booleans false, lists and objects empty.
    """
    names = re.findall(r"\b[A-Z][a-z]+\b", text)
    defaults = {"integer": 0, "number": 0.0, "boolean": False, "array": [], "object": {}}
    props = schema.get("properties", {})
    out: dict[str, Any] = {}
    for key in schema.get("required", []):
        kind = props.get(key, {}).get("type", "string")
        if kind == "string":
            named = re.search(rf"\b{re.escape(key)}\s+is\s+([A-Z]\w*)", text, re.IGNORECASE)
            out[key] = named.group(1) if named else (names[-1] if names else "")
        else:
            out[key] = defaults.get(kind)
    return out


def embed(text: str, dim: int) -> list[float]:
    """Hashed bag of words, normalised: texts that share words get similar vectors."""
    vec = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        h = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
        vec[h % dim] += 1.0 if (h >> 31) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]
