"""``/invoke``, ``/batch``, ``/stream`` and the derived JSON schemas, for chains and models."""

from __future__ import annotations

import json

import httpx
from pydantic import BaseModel

from plait.fake import FakeChatModel
from plait.parsers import StrOutputParser
from plait.prompts import ChatPromptTemplate
from plait.runnable import Lambda
from tests.serve.apps import rag_chain


class Question(BaseModel):
    text: str
    shout: bool = False


def answer(q: Question) -> str:
    return q.text.upper() if q.shout else q.text


def events(raw: str) -> list[tuple[str, str]]:
    out = []
    for block in raw.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((fields["event"], fields["data"]))
    return out


def test_typed_function_chain(serve):
    server = serve(Lambda(answer))
    url = server.url
    schema = httpx.get(url + "/input_schema").json()
    assert schema["properties"]["text"]["type"] == "string" and schema["required"] == ["text"]
    assert httpx.get(url + "/output_schema").json() == {"type": "string"}
    r = httpx.post(url + "/invoke", json={"input": {"text": "hi", "shout": True}})
    assert r.json()["output"] == "HI"  # the JSON object became the pydantic model the function takes
    r = httpx.post(url + "/batch", json={"inputs": [{"text": "a"}, {"text": "b", "shout": True}]})
    assert r.json()["output"] == ["a", "B"]
    bad = httpx.post(url + "/invoke", json={"input": {"shout": True}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    assert "text" in bad.json()["error"]["message"]
    assert httpx.post(url + "/invoke", json={"inputs": []}).status_code == 400


def test_prompt_model_parser_chain_streams(serve):
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("user", "{question}")])
    chain = prompt | FakeChatModel(["Paris is the capital."]) | StrOutputParser()
    server = serve(chain)
    schema = httpx.get(server.url + "/input_schema").json()
    assert schema["required"] == ["question"]
    assert httpx.get(server.url + "/output_schema").json() == {"type": "string"}
    with httpx.stream("POST", server.url + "/stream", json={"input": {"question": "Capital?"}}) as r:
        evs = events(r.read().decode())
    assert [json.loads(d) for e, d in evs if e == "data"] == ["Paris", " is", " the", " capital."]
    assert evs[-1][0] == "end"
    bad = httpx.post(server.url + "/invoke", json={"input": {"topic": "x"}})
    assert bad.status_code == 400 and "question" in bad.json()["error"]["message"]


def test_chat_model_generic_routes(serve):
    server = serve(FakeChatModel(["One two."]))
    schema = httpx.get(server.url + "/output_schema").json()
    assert "content" in schema["properties"] and "tool_calls" in schema["properties"]
    out = httpx.post(server.url + "/invoke", json={"input": [{"role": "user", "content": "hi"}]}).json()["output"]
    assert out["content"] == "One two." and out["role"] == "assistant"
    r = httpx.post(server.url + "/invoke", json={"input": "hi", "options": {"stop": ["two"]}})
    assert r.json()["output"]["content"] == "One "
    r = httpx.post(server.url + "/invoke", json={"input": "hi", "options": {"warmth": 3}})
    assert r.status_code == 400 and "warmth" in r.json()["error"]["message"]


def test_rag_chain_generic_stream_and_invoke(serve):
    server = serve(rag_chain())
    out = httpx.post(server.url + "/invoke", json={"input": "How?"}).json()["output"]
    assert out["answer"] == "Steps compose with the | operator [1]."
    assert out["citations"][0]["source"] == "docs/compose.md"
    assert "answer" in httpx.get(server.url + "/output_schema").json()["properties"]


def test_stream_error_event(serve):
    def fails(x):
        raise RuntimeError("hidden detail")

    server = serve(Lambda(fails))
    r = httpx.post(server.url + "/stream", json={"input": "x"})
    assert r.status_code == 500 and "hidden" not in r.text  # failed before the first event

    async def fails_later(chunks):
        async for _ in chunks:
            pass
        yield "a"
        raise RuntimeError("hidden detail")

    server = serve(Lambda(fails_later))
    with httpx.stream("POST", server.url + "/stream", json={"input": "x"}) as r:
        evs = events(r.read().decode())
    assert evs[0] == ("data", '"a"') and evs[-1][0] == "error" and "hidden" not in evs[-1][1]
