"""Turn what plait steps return into JSON, and OpenAI wire messages into plait messages.

``jsonable`` is the one place that decides how a value crosses the wire: pydantic models by
field, documents with their ``source``, PIL images as base64 PNG (``{"b64_json", "mime_type"}``),
bytes as base64, anything unknown as its ``str``.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from typing import Any

from pydantic import BaseModel

from plait.messages import Document, ImageResult, Message, message_from
from plait.serve.errors import APIError

_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


def is_pil_image(value: Any) -> bool:
    return hasattr(value, "save") and hasattr(value, "size") and hasattr(value, "mode")


def image_b64(image: Any) -> str:
    """A PIL image as base64-encoded PNG."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def document_json(doc: Document) -> dict[str, Any]:
    return {"id": doc.id, "content": doc.content, "metadata": jsonable(doc.metadata), "score": doc.score,
            "source": doc.source}


def jsonable(value: Any) -> Any:
    """A JSON-ready copy of ``value`` (see the module docstring for the rules)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Document):
        return document_json(value)
    if isinstance(value, ImageResult):
        return {"images": [{"b64_json": image_b64(im), "mime_type": "image/png"} for im in value.images],
                "parameters": jsonable(value.parameters), "model": value.model}
    if isinstance(value, BaseModel):
        return {k: jsonable(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if is_pil_image(value):
        return {"b64_json": image_b64(value), "mime_type": "image/png"}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return str(value)


def _content_text(content: Any, where: str) -> str:
    """OpenAI content: a string, null, or a list of parts of which only text parts are accepted."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise APIError(400, f"{where}.content[{j}] is a {kind!r} part; this server takes text parts only "
                                    "({'type': 'text', 'text': ...}).", param=f"{where}.content")
            texts.append(part["text"])
        return "\n".join(texts)
    raise APIError(400, f"{where}.content must be a string or a list of text parts, not {type(content).__name__}.",
                   param=f"{where}.content")


def messages_from_openai(raw: list[dict[str, Any]]) -> list[Message]:
    """OpenAI chat messages (as parsed JSON) to plait messages; a bad one is a 400 naming its index."""
    out: list[Message] = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise APIError(400, f"{where} must be an object with 'role' and 'content'.", param=where)
        fields = {k: m[k] for k in _MESSAGE_KEYS if k in m and m[k] is not None}
        if fields.get("role") == "developer":
            fields["role"] = "system"
        fields["content"] = _content_text(m.get("content"), where)
        try:
            out.append(message_from(fields))
        except (ValueError, TypeError, KeyError) as e:
            raise APIError(400, f"{where} is not a valid chat message: {e}", param=where) from None
    return out
