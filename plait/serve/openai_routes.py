"""The OpenAI-compatible routes: chat completions (plain and streamed), models, embeddings, images.

Streamed completions follow OpenAI's chunk format exactly: a first chunk with the assistant role,
one ``chat.completion.chunk`` per content (or tool-call) piece, a last chunk with an empty delta
and the finish reason, an optional usage chunk (``stream_options.include_usage``), then
``data: [DONE]``. RAG sources and images ride in extra top-level fields (``sources``, ``citations``,
``images``)
of the last chunk or of the whole completion; standard clients ignore them.

``logprobs: true`` (with ``top_logprobs``) is passed to a chat model that takes the option (else
400); each content chunk, and the whole completion, then carries ``choices[0].logprobs.content``
in OpenAI's format: the tokens of that content with their log-probabilities.

``n`` > 1 (a chat model with ``supports_n``, such as ``--model local``; else 400) gives ``n``
choices, index 0 to n-1: streamed, each chunk carries one choice's delta and each choice ends with
its own finish chunk; usage counts the prompt once and the completion tokens of all choices.

Usage is the served model's own count when it reports one; otherwise it is an estimate
(completion: streamed pieces, or words when not streaming; prompt: words of the messages).
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from collections.abc import AsyncIterator
from json.encoder import encode_basestring_ascii as _json_str  # what json.dumps does for a str, in C
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from plait.embeddings import Embeddings
from plait.messages import AssistantChunk, AssistantMessage, ImageResult, TokenLogprob, ToolCallChunk, Usage
from plait.serve.adapters import Answer, ChatTarget, Reply, estimate_tokens, piece_from
from plait.serve.convert import image_b64, jsonable
from plait.serve.errors import APIError, guarded
from plait.serve.openai_types import (
    ChatCompletionRequest,
    EmbeddingRequest,
    ImageRequest,
    check_choices,
    parse,
)
from plait.serve.running import run_request
from plait.serve.served import Served
from plait.serve.streaming import EventStream


def _schema_body(model: type) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": model.model_json_schema()}}}}  # type: ignore[attr-defined]


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(estimate_tokens(m["content"]) for m in messages
               if isinstance(m, dict) and isinstance(m.get("content"), str))


def _usage_of_choices(replies: list[Reply], prompt_estimate: int) -> dict[str, int]:
    """One usage for several choices: the prompt once, the completion tokens of all (as OpenAI counts)."""
    usages = [r.usage for r in replies]
    if any(u is None for u in usages):
        return _usage_json(None, prompt_estimate, sum(r.pieces for r in replies))
    prompt = max(u.prompt_tokens for u in usages if u is not None)
    completion = sum(u.completion_tokens for u in usages if u is not None)
    return _usage_json(Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
                       prompt_estimate, 0)


def _n_choices(chat: ChatTarget, req: ChatCompletionRequest) -> int:
    """The request's ``n``; 400 naming it where the served object gives one choice per request."""
    n = req.n or 1
    if n > 1 and not (chat.is_chat_model and getattr(chat.runnable, "supports_n", False)):
        what = "model" if chat.is_chat_model else "chain"
        raise APIError(400, f"The served {what} returns one choice per request; drop 'n' or set it to 1.",
                       param="n")
    return n


def _usage_json(usage: Usage | None, prompt_estimate: int, completion_estimate: int) -> dict[str, int]:
    if usage is None:
        usage = Usage(prompt_tokens=prompt_estimate, completion_tokens=completion_estimate,
                      total_tokens=prompt_estimate + completion_estimate)
    total = usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens, "total_tokens": total}


def _logprob_options(chat: ChatTarget, req: ChatCompletionRequest, options: dict[str, Any]) -> dict[str, Any]:
    """The request's ``logprobs`` / ``top_logprobs`` as model options; 400 where the model cannot."""
    if not req.logprobs:
        return options
    if not chat.is_chat_model or "logprobs" not in chat.option_names:
        raise APIError(400, "The served model does not return logprobs; drop 'logprobs' (and 'top_logprobs').",
                       param="logprobs")
    extra: dict[str, Any] = {"logprobs": True}
    if req.top_logprobs is not None:
        extra["top_logprobs"] = req.top_logprobs
    return {**options, **extra}


def _logprobs_json(logprobs: list[TokenLogprob] | None) -> dict[str, Any] | None:
    """OpenAI's ``choices[i].logprobs``: ``{"content": [...], "refusal": null}``, or null when not asked for."""
    if logprobs is None:
        return None
    return {"content": [t.model_dump() for t in logprobs], "refusal": None}


def _tool_call_delta(chunks: list[ToolCallChunk]) -> list[dict[str, Any]]:
    out = []
    for c in chunks:
        call: dict[str, Any] = {"index": c.index}
        if c.id:
            call["id"] = c.id
        if c.id or c.name:
            call["type"] = "function"
        fn: dict[str, Any] = {"arguments": c.arguments}
        if c.name:
            fn["name"] = c.name
        call["function"] = fn
        out.append(call)
    return out


async def _chunk_events(chat: ChatTarget, value: Any, options: dict[str, Any], answer: Answer, *, cid: str,
                        created: int, model: str, include_usage: bool, prompt_tokens: int) -> AsyncIterator[bytes]:
    """The SSE events of one streamed completion (see the module docstring)."""
    # Every chunk shares its head and tail; only the delta changes. Built once, so a content
    # token costs one json.dumps of its text.
    head = (f'data: {{"id":"{cid}","object":"chat.completion.chunk","created":{created},'
            f'"model":{json.dumps(model)},"system_fingerprint":null,"choices":[{{"index":0,"delta":').encode()
    tail = (b',"logprobs":null,"finish_reason":null}]' + (b',"usage":null' if include_usage else b'') + b'}\n\n')
    role = head + b'{"role":"assistant","content":""}' + tail
    started = False
    texts = answer.texts
    # One write per piece: the role chunk goes out with the first piece, and the last chunk,
    # usage and [DONE] together (each write is a system call, the main cost per token).
    async for chunk in chat.runnable.astream(value, **options):
        out = b""
        if not started:
            started = True
            out = role
        # Fast path for the common chunk, a bare piece of text (from a model or a text chain).
        cls = type(chunk)
        if cls is str or (cls is AssistantChunk and not chunk.tool_call_chunks and chunk.usage is None
                          and not chunk.finish_reason and chunk.logprobs is None):
            text = chunk if cls is str else chunk.content
            if text:
                texts.append(text)
                out += head + b'{"content":' + _json_str(text).encode() + b'}' + tail
            if out:
                yield out
            continue
        piece = piece_from(chunk)
        if piece is None:
            if out:
                yield out
            continue
        calls = answer.add(piece)
        logprobs = chunk.logprobs if cls is AssistantChunk else None
        if logprobs:  # the piece's tokens go with its text
            out += (head + b'{"content":' + json.dumps(piece.content).encode() + b'},"logprobs":'
                    + json.dumps(_logprobs_json(logprobs)).encode() + tail[len(b',"logprobs":null'):])
        elif piece.content:
            out += head + b'{"content":' + json.dumps(piece.content).encode() + b'}' + tail
        if calls:
            out += head + json.dumps({"tool_calls": _tool_call_delta(calls)}).encode() + tail
        if out:
            yield out
    end = b"" if started else role
    extra = answer.other_text()
    if extra is not None:
        end += head + json.dumps({"content": extra}).encode() + tail
    reply = answer.reply()
    last: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                            "system_fingerprint": None, "choices": [{
                                "index": 0, "delta": {}, "logprobs": None, "finish_reason": reply.finish_reason}]}
    if include_usage:
        last["usage"] = None
    _add_extras(last, reply)
    end += b"data: " + json.dumps(last, ensure_ascii=False).encode() + b"\n\n"
    if include_usage:
        end += b"data: " + json.dumps({
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None, "choices": [],
            "usage": _usage_json(reply.usage, prompt_tokens, reply.pieces)}).encode() + b"\n\n"
    yield end + b"data: [DONE]\n\n"


def _add_extras(body: dict[str, Any], reply: Reply) -> None:
    if reply.sources is not None:
        body["sources"] = reply.sources
    if reply.citations is not None:
        body["citations"] = reply.citations
    if reply.images:
        body["images"] = reply.images


async def _collect(chat: ChatTarget, value: Any, options: dict[str, Any],
                   answer: Answer) -> tuple[Reply, list[TokenLogprob] | None]:
    """A whole completion: the same stream, added up (so a client leaving can stop it at any token)."""
    logprobs: list[TokenLogprob] | None = None
    async for chunk in chat.runnable.astream(value, **options):
        piece = piece_from(chunk)
        if piece is not None:
            answer.add(piece)
        if isinstance(chunk, (AssistantChunk, AssistantMessage)) and chunk.logprobs is not None:
            logprobs = (logprobs or []) + chunk.logprobs
    return answer.reply(), logprobs


async def _collect_choices(chat: ChatTarget, value: Any, n: int, options: dict[str, Any],
                           one_call: bool) -> list[tuple[Reply, list[TokenLogprob] | None]]:
    """``n`` whole choices: the choices' stream, added up per choice."""
    answers = [Answer(one_call=one_call) for _ in range(n)]
    logprobs: list[list[TokenLogprob] | None] = [None] * n
    async for i, chunk in chat.runnable.astream_choices(value, n=n, **options):  # type: ignore[attr-defined]
        piece = piece_from(chunk)
        if piece is not None:
            answers[i].add(piece)
        if chunk.logprobs is not None:
            logprobs[i] = (logprobs[i] or []) + chunk.logprobs
    return [(a.reply(), lp) for a, lp in zip(answers, logprobs, strict=True)]


async def _choice_events(chat: ChatTarget, value: Any, n: int, options: dict[str, Any], *, one_call: bool,
                         cid: str, created: int, model: str, include_usage: bool,
                         prompt_tokens: int) -> AsyncIterator[bytes]:
    """The SSE events of ``n`` streamed choices: each chunk holds one choice's delta, and each choice
    starts with its role chunk and ends with its own finish chunk."""
    def event(i: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> bytes:
        body: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                                "system_fingerprint": None, "choices": [{"index": i, "delta": delta,
                                                                         "logprobs": logprobs,
                                                                         "finish_reason": finish}]}
        if include_usage:
            body["usage"] = None
        return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"

    answers = [Answer(one_call=one_call) for _ in range(n)]
    started, finished = set(), set()
    async for i, chunk in chat.runnable.astream_choices(value, n=n, **options):  # type: ignore[attr-defined]
        out = b""
        if i not in started:
            started.add(i)
            out += event(i, {"role": "assistant", "content": ""})
        piece = piece_from(chunk)
        if piece is not None:
            calls = answers[i].add(piece)
            if piece.content or chunk.logprobs:
                out += event(i, {"content": piece.content}, logprobs=_logprobs_json(chunk.logprobs or None))
            if calls:
                out += event(i, {"tool_calls": _tool_call_delta(calls)})
            if piece.finish_reason:
                finished.add(i)
                out += event(i, {}, answers[i].reply().finish_reason)
        if out:
            yield out
    end = b""
    for i in range(n):  # a choice whose end the model did not report (never for plait's models)
        if i not in finished:
            end += (b"" if i in started else event(i, {"role": "assistant", "content": ""}))
            end += event(i, {}, answers[i].reply().finish_reason)
    if include_usage:
        end += b"data: " + json.dumps({
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None, "choices": [],
            "usage": _usage_of_choices([a.reply() for a in answers], prompt_tokens)}).encode() + b"\n\n"
    yield end + b"data: [DONE]\n\n"


def _completion_body(replies: list[tuple[Reply, list[TokenLogprob] | None]], *, cid: str, created: int,
                     model: str, prompt_tokens: int) -> dict[str, Any]:
    choices = []
    for index, (reply, logprobs) in enumerate(replies):
        message: dict[str, Any] = {"role": "assistant", "refusal": None,
                                   "content": reply.content or (None if reply.tool_calls else "")}
        if reply.tool_calls:
            message["tool_calls"] = [{"id": tc.id or f"call_{tc.index}", "type": "function", "function": {
                "name": tc.name or "", "arguments": tc.arguments}} for tc in reply.tool_calls]
        choices.append({"index": index, "message": message, "logprobs": _logprobs_json(logprobs),
                        "finish_reason": reply.finish_reason})
    first = replies[0][0]
    body: dict[str, Any] = {
        "id": cid, "object": "chat.completion", "created": created, "model": model, "system_fingerprint": None,
        "choices": choices,
        "usage": (_usage_json(first.usage, prompt_tokens, first.pieces) if len(replies) == 1
                  else _usage_of_choices([r for r, _ in replies], prompt_tokens)),
    }
    _add_extras(body, first)
    return body


def _floats_b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


async def _embed(embeddings: Embeddings, texts: list[str]) -> list[list[float]]:
    vectors = await embeddings.aembed_documents(texts)
    return [[float(x) for x in v] for v in vectors]


def _embedding_texts(emb: Embeddings, value: str | list[Any]) -> list[str]:
    """The texts to embed: OpenAI's ``input`` as text, or token ids decoded by the model's own tokenizer."""
    if isinstance(value, str):
        return [value]
    if not value:
        raise APIError(400, "'input' is empty: send a string or a non-empty list of strings.", param="input")
    if isinstance(value[0], str):
        return value
    token_lists = [value] if isinstance(value[0], int) else value
    if not hasattr(type(emb), "tokenizer"):
        raise APIError(400, "'input' holds token ids, but this server does not know the embeddings model's "
                            "tokenizer: send 'input' as text (a string or a list of strings).", param="input")
    tokenizer = emb.tokenizer  # type: ignore[attr-defined]
    size = len(tokenizer)
    for i, ids in enumerate(token_lists):
        if not ids:
            raise APIError(400, f"input[{i}] is an empty list of token ids.", param="input")
        bad = next((t for t in ids if not 0 <= t < size), None)
        if bad is not None:
            raise APIError(400, f"input holds the token id {bad}, outside the model's vocabulary (0 to {size - 1}).",
                           param="input")
    return [tokenizer.decode(ids, skip_special_tokens=True) for ids in token_lists]


def _image_params(req: ImageRequest) -> dict[str, Any]:
    """The image model's input: the dict of the image-model interface (``prompt``, ``num_images``,
    ``width``, ``height``, ``seed``, ``steps``, ``guidance_scale``, ``negative_prompt``)."""
    params: dict[str, Any] = {"prompt": req.prompt}
    if req.n != 1:
        params["num_images"] = req.n
    if req.size is not None and req.size != "auto":
        try:
            width, height = (int(x) for x in req.size.lower().split("x"))
        except ValueError:
            raise APIError(400, f"Invalid size {req.size!r}: use WIDTHxHEIGHT, e.g. '256x256'.",
                           param="size") from None
        params["width"], params["height"] = width, height
    for key in ("seed", "steps", "guidance_scale", "negative_prompt"):
        if getattr(req, key) is not None:
            params[key] = getattr(req, key)
    return params


def add_openai_routes(app: FastAPI, served: Served) -> None:
    config = served.config

    @app.post("/v1/chat/completions", openapi_extra=_schema_body(ChatCompletionRequest))
    @guarded
    async def chat_completions(request: Request) -> Response:
        req = parse(ChatCompletionRequest, await request.body())
        chat = served.require_chat(req.model)
        check_choices(req)
        n = _n_choices(chat, req)
        value, options = chat.prepare(req)
        options = _logprob_options(chat, req, options)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        prompt_tokens = _prompt_tokens(req.messages)
        ignored = chat.ignored_options(req)
        headers = {"x-plait-ignored-options": ",".join(ignored)} if ignored else {}
        answer = Answer(one_call=chat.one_call(req), max_tokens=None if chat.is_chat_model else options.get("max_tokens"))
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            if n > 1:
                events = _choice_events(chat, value, n, options, one_call=answer.one_call, cid=cid, created=created,
                                        model=req.model, include_usage=include_usage, prompt_tokens=prompt_tokens)
            else:
                events = _chunk_events(chat, value, options, answer, cid=cid, created=created, model=req.model,
                                       include_usage=include_usage, prompt_tokens=prompt_tokens)
            return EventStream(events, timeout_s=config.timeout_s, headers=headers,
                               heartbeat_s=config.heartbeat_s)
        if n > 1:
            replies = await run_request(lambda: _collect_choices(chat, value, n, options, answer.one_call),
                                        request.receive, config.timeout_s)
        else:
            replies = [await run_request(lambda: _collect(chat, value, options, answer), request.receive,
                                         config.timeout_s)]
        return JSONResponse(_completion_body(replies, cid=cid, created=created, model=req.model,
                                             prompt_tokens=prompt_tokens), headers=headers)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(i) for i in served.model_ids()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id not in served.model_ids():
            raise APIError(404, f"The model '{model_id}' does not exist on this server; GET /v1/models lists "
                                "the models.", param="model", code="model_not_found")
        return _model_card(model_id)

    @app.post("/v1/embeddings", openapi_extra=_schema_body(EmbeddingRequest))
    @guarded
    async def embeddings(request: Request) -> Response:
        req = parse(EmbeddingRequest, await request.body())
        emb = served.require_embeddings(req.model)
        texts = _embedding_texts(emb, req.input)
        if req.dimensions is not None:
            raise APIError(400, "This embeddings model has a fixed size; drop 'dimensions'.", param="dimensions")
        vectors = await run_request(lambda: _embed(emb, texts), request.receive, config.timeout_s)
        data = [{"object": "embedding", "index": i,
                 "embedding": _floats_b64(v) if req.encoding_format == "base64" else v}
                for i, v in enumerate(vectors)]
        tokens = sum(estimate_tokens(t) for t in texts)
        return JSONResponse({"object": "list", "data": data, "model": req.model,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.post("/v1/images/generations", openapi_extra=_schema_body(ImageRequest))
    @guarded
    async def images(request: Request) -> Response:
        req = parse(ImageRequest, await request.body())
        model = served.require_images(req.model)
        if req.response_format == "url":
            raise APIError(400, "This server returns images inline only: use response_format='b64_json'.",
                           param="response_format")
        params = _image_params(req)
        result = await run_request(lambda: model.ainvoke(params), request.receive, config.timeout_s)
        if not isinstance(result, ImageResult):
            raise RuntimeError(f"The image model returned a {type(result).__name__}, not an ImageResult")
        return JSONResponse({"created": int(time.time()),
                             "data": [{"b64_json": image_b64(im), "revised_prompt": None} for im in result.images],
                             "parameters": jsonable(result.parameters), "model": result.model})


def _model_card(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "plait"}
