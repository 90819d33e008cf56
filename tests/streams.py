"""Builders for what a fake upstream sends: OpenAI-shaped chunks and the handlers that send them.

The default stream is shaped as OpenAI sends it with `stream_options.include_usage`: a role
chunk, content chunks, a chunk with an empty delta and finish_reason, a usage-only chunk with
`choices: []`, then `data: [DONE]` (platform.openai.com/docs/api-reference/chat-streaming).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from wire.sse import Event, SSEDecoder

MODEL = "gpt-4o-mini-2024-07-18"
USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def chat_chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    *,
    usage: Any = None,
    choices: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    if choices is None:
        choices = [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "system_fingerprint": "fp_1",
        "choices": choices,
        "usage": usage,
    }


def completion_chunk(text: str, finish: str | None = None, usage: Any = None) -> dict[str, Any]:
    return {
        "id": "cmpl-123",
        "object": "text_completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }


def data(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def openai_chat_stream(tokens: list[str], finish: str = "stop") -> list[bytes]:
    """OpenAI's own shape: separate finish chunk, then a usage-only chunk."""
    events = [data(chat_chunk({"role": "assistant", "content": ""}))]
    events += [data(chat_chunk({"content": token})) for token in tokens]
    events.append(data(chat_chunk({}, finish)))
    events.append(data(chat_chunk(choices=[], usage=USAGE)))
    return [*events, DONE]


def inline_finish_stream(tokens: list[str], finish: str = "stop") -> list[bytes]:
    """Some servers put the last token, finish_reason and usage in one chunk, and no role."""
    events = [data(chat_chunk({"content": token})) for token in tokens[:-1]]
    events.append(data(chat_chunk({"content": tokens[-1]}, finish, usage=USAGE)))
    return [*events, DONE]


def anthropic_event(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\n".encode() + data({"type": kind, **payload})


def anthropic_stream(
    tokens: list[str], stop_reason: str = "end_turn", input_tokens: int = 25
) -> list[bytes]:
    """Anthropic's Messages stream: message_start (the input count), one text block, then
    message_delta (stop_reason, the output count) and message_stop."""
    usage = {"input_tokens": input_tokens, "output_tokens": 1}
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": []}
    events = [anthropic_event("message_start", {"message": {**message, "usage": usage}})]
    block = {"type": "text", "text": ""}
    events.append(anthropic_event("content_block_start", {"index": 0, "content_block": block}))
    events += [
        anthropic_event(
            "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": token}}
        )
        for token in tokens
    ]
    events.append(anthropic_event("content_block_stop", {"index": 0}))
    delta = {"delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": len(tokens)}}
    events.append(anthropic_event("message_delta", delta))
    events.append(anthropic_event("message_stop", {}))
    return events


def weather_tool(argument: str) -> dict[str, Any]:
    """A function tool with one required string argument, as a client offers it."""
    parameters = {
        "type": "object",
        "properties": {argument: {"type": "string"}},
        "required": [argument],
    }
    return {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": parameters,
        },
    }


def chat_completion(text: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": USAGE,
    }


def streaming(
    pieces: list[bytes],
    *,
    delay: float = 0.0,
    first_delay: float = 0.0,
    end_delay: float = 0.0,
    then: str = "end",
) -> Handler:
    """Send `pieces` as separate writes, `delay` apart; then (after `end_delay`) end, `hang`,
    or `reset`."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if first_delay:
            await asyncio.sleep(first_delay)
        for i, piece in enumerate(pieces):
            if delay and i:
                await asyncio.sleep(delay)
            await response.write(piece)
        if end_delay:
            await asyncio.sleep(end_delay)
        if then == "hang":
            await asyncio.sleep(3600)
        elif then == "reset":
            assert request.transport is not None
            request.transport.abort()
            await asyncio.sleep(3600)
        return response

    return handler


def answering(body: Any, status: int = 200, *, delay: float = 0.0) -> Handler:
    """Answer once with JSON (or raw bytes), after `delay` seconds before the headers."""

    async def handler(request: web.Request) -> web.Response:
        if delay:
            await asyncio.sleep(delay)
        if isinstance(body, bytes):
            return web.Response(body=body, status=status, content_type="text/plain")
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")

    return handler


async def post_stream(url: str, model: str) -> tuple[int, bytes]:
    """A streamed chat request as raw HTTP (no SDK to interpret it): the status and the body."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/chat/completions", json=body) as response,
    ):
        return response.status, await response.read()


def parse_sse(raw: bytes) -> list[Event]:
    """The events of a whole SSE body (comments dropped), as a client would see them."""
    return [item for item in SSEDecoder().feed(raw) if isinstance(item, Event)]
