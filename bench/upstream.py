"""Mock upstream: OpenAI, Anthropic, Gemini and Ollama wire formats from pre-encoded bytes.

Run as `python -m bench.upstream --port P`. Every reply is built once per shape (format,
token count, chunk size, usage) and cached, so serving a stream costs a few writes and no
JSON encoding: the upstream shares a core with the load generator and must stay cheap.

Per-run options, in increasing precedence:
- the process defaults (`--tokens`, `--delay-ms`, `--chunk-bytes`, `--usage`);
- `POST /_bench/config` with the same keys as JSON, which the orchestrator sends before each
  run (this is what reaches a peer proxy that would drop unknown body fields);
- a `"bench": {...}` object in the request body (the gateway forwards unknown fields).
`GET /_bench/stats` counts the requests served, so the orchestrator can check that a proxy
really reached this upstream.

The format is picked from the path's ending, so any base_url convention works:
`.../chat/completions` OpenAI, `.../messages` Anthropic, `...:streamGenerateContent` and
`...:generateContent` Gemini, `.../api/chat` Ollama.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from aiohttp import web

from bench.common import run, serve_app

MODEL = "mock-model"
CREATED = 1_700_000_000
PROMPT_TOKENS = 12
# Cycled to make token texts: ASCII only, so no JSON escaping and len(text) == bytes.
TEXT = " lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor"
USAGE_MODES = ("auto", "always", "never")  # auto: as OpenAI, only if include_usage


class Options(msgspec.Struct, forbid_unknown_fields=True):
    tokens: int = 100
    delay_ms: float = 0.0
    chunk_bytes: int = 4
    usage: str = "auto"

    def check(self) -> None:
        if self.tokens < 0 or self.delay_ms < 0 or self.chunk_bytes < 1:
            raise ValueError("tokens and delay_ms must be >= 0, chunk_bytes >= 1")
        if self.usage not in USAGE_MODES:
            raise ValueError(f"usage must be one of {USAGE_MODES}")


@dataclass(slots=True)
class Encoded:
    """One reply, pre-encoded: `head`, one item per token, `tail`; `whole` joins them."""

    content_type: str
    head: bytes
    tokens: list[bytes]
    tail: bytes
    whole: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.whole = self.head + b"".join(self.tokens) + self.tail


def token_texts(n: int, size: int) -> list[str]:
    text = TEXT * (n * size // len(TEXT) + 2)
    return [text[i * size : (i + 1) * size] for i in range(n)]


def _sse(obj: Any, event: str | None = None, sep: bytes = b"\n\n") -> bytes:
    line = b"data: " + orjson.dumps(obj) + sep
    return b"event: " + event.encode() + b"\n" + line if event else line


def _openai_usage(n: int) -> dict[str, Any]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": n,
        "total_tokens": PROMPT_TOKENS + n,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_stream(texts: list[str], usage: bool) -> Encoded:
    # Shape of a real OpenAI stream: role chunk, content chunks, finish chunk with an empty
    # delta, then (include_usage) a chunk with no choices; every chunk carries "usage":null
    # when include_usage is on.
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "service_tier": "default",
            "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if usage:
            body["usage"] = None
        return body

    head = _sse(chunk({"role": "assistant", "content": "", "refusal": None}, None))
    tokens = [_sse(chunk({"content": t}, None)) for t in texts]
    tail = _sse(chunk({}, "stop"))
    if usage:
        last = chunk({}, None)
        last["choices"] = []
        last["usage"] = _openai_usage(len(texts))
        tail += _sse(last)
    tail += b"data: [DONE]\n\n"
    return Encoded("text/event-stream; charset=utf-8", head, tokens, tail)


def openai_json(texts: list[str]) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(texts),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _openai_usage(len(texts)),
            "service_tier": "default",
            "system_fingerprint": "fp_bench",
        }
    )


def anthropic_stream(texts: list[str]) -> Encoded:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1},
        },
    }
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    head = (
        _sse(start, "message_start")
        + _sse(block, "content_block_start")
        + _sse({"type": "ping"}, "ping")
    )
    tokens = [
        _sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
            "content_block_delta",
        )
        for t in texts
    ]
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": len(texts)},
    }
    tail = (
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        + _sse(delta, "message_delta")
        + _sse({"type": "message_stop"}, "message_stop")
    )
    return Encoded("text/event-stream; charset=utf-8", head, tokens, tail)


def anthropic_json(texts: list[str]) -> bytes:
    return orjson.dumps(
        {
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": "".join(texts)}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": len(texts)},
        }
    )


def _gemini(text: str, n: int, finish: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
    if finish:
        candidate["finishReason"] = "STOP"
    candidate["index"] = 0
    return {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": PROMPT_TOKENS,
            "candidatesTokenCount": n,
            "totalTokenCount": PROMPT_TOKENS + n,
        },
        "modelVersion": MODEL,
    }


def gemini_stream(texts: list[str]) -> Encoded:
    # Gemini's alt=sse stream: data-only events separated by CRLF pairs, no [DONE]; the last
    # event carries finishReason. Its text is part of the stream, so the last token is the tail.
    if not texts:
        return Encoded("text/event-stream", b"", [], _sse(_gemini("", 0, True), sep=b"\r\n\r\n"))
    events = [
        _sse(_gemini(t, i + 1, i == len(texts) - 1), sep=b"\r\n\r\n") for i, t in enumerate(texts)
    ]
    return Encoded("text/event-stream", b"", events, b"")


def gemini_array(texts: list[str]) -> Encoded:
    # Without alt=sse, streamGenerateContent answers one JSON array, element by element.
    items = [orjson.dumps(_gemini(t, i + 1, i == len(texts) - 1)) for i, t in enumerate(texts)]
    tokens = [(b"[" if i == 0 else b",\r\n") + item for i, item in enumerate(items)]
    return Encoded("application/json; charset=UTF-8", b"" if items else b"[", tokens, b"]")


def gemini_json(texts: list[str]) -> bytes:
    return orjson.dumps(_gemini("".join(texts), len(texts), True))


def _ollama(text: str, done: bool, n: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "created_at": "2024-01-01T00:00:00.000000Z",
        "message": {"role": "assistant", "content": text},
        "done": done,
    }
    if done:
        body |= {
            "done_reason": "stop",
            "total_duration": 1_000_000,
            "load_duration": 1_000,
            "prompt_eval_count": PROMPT_TOKENS,
            "prompt_eval_duration": 1_000,
            "eval_count": n,
            "eval_duration": 1_000_000,
        }
    return body


def ollama_stream(texts: list[str]) -> Encoded:
    tokens = [orjson.dumps(_ollama(t, False, 0)) + b"\n" for t in texts]
    tail = orjson.dumps(_ollama("", True, len(texts))) + b"\n"
    return Encoded("application/x-ndjson", b"", tokens, tail)


def ollama_json(texts: list[str]) -> bytes:
    return orjson.dumps(_ollama("".join(texts), True, len(texts)))


class Cache:
    """Encoded replies keyed by shape; bounded, since a run only ever uses a few shapes."""

    def __init__(self, limit: int = 64) -> None:
        self._items: dict[tuple[Any, ...], Encoded | bytes] = {}
        self._limit = limit

    def get(self, key: tuple[Any, ...], build: Callable[[], Encoded | bytes]) -> Encoded | bytes:
        found = self._items.get(key)
        if found is None:
            if len(self._items) >= self._limit:
                self._items.pop(next(iter(self._items)))
            found = self._items[key] = build()
        return found


@dataclass(slots=True)
class State:
    options: Options
    cache: Cache = field(default_factory=Cache)
    served: dict[str, int] = field(default_factory=dict)


STATE = web.AppKey("state", State)


def _options(state: State, body: dict[str, Any]) -> Options:
    extra = body.get("bench")
    if not isinstance(extra, dict):
        return state.options
    merged = msgspec.structs.asdict(state.options) | extra
    opts = msgspec.convert(merged, Options)
    opts.check()
    return opts


def _wants_usage(opts: Options, body: dict[str, Any]) -> bool:
    if opts.usage != "auto":
        return opts.usage == "always"
    so = body.get("stream_options")
    return isinstance(so, dict) and bool(so.get("include_usage"))


def _format(path: str, query: dict[str, str], body: dict[str, Any]) -> tuple[str, bool]:
    """(format, streamed) from the path, the query and the body."""
    if path.endswith("/chat/completions"):
        return "openai", bool(body.get("stream"))
    if path.endswith("/messages"):
        return "anthropic", bool(body.get("stream"))
    if path.endswith(":streamGenerateContent"):
        return ("gemini-sse" if query.get("alt") == "sse" else "gemini-array"), True
    if path.endswith(":generateContent"):
        return "gemini", False
    if path.endswith("/api/chat"):
        return "ollama", body.get("stream", True) is not False  # Ollama streams by default
    raise web.HTTPNotFound(text=f"mock upstream: no wire format for {path}")


def _build(fmt: str, streamed: bool, texts: list[str], usage: bool) -> Encoded | bytes:
    if fmt == "openai":
        return openai_stream(texts, usage) if streamed else openai_json(texts)
    if fmt == "anthropic":
        return anthropic_stream(texts) if streamed else anthropic_json(texts)
    if fmt == "gemini-sse":
        return gemini_stream(texts)
    if fmt == "gemini-array":
        return gemini_array(texts)
    if fmt == "gemini":
        return gemini_json(texts)
    return ollama_stream(texts) if streamed else ollama_json(texts)


async def handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else {}
        if not isinstance(body, dict):
            raise ValueError("body is not a JSON object")
        opts = _options(state, body)
    except (ValueError, msgspec.ValidationError) as exc:
        return web.json_response({"error": {"message": str(exc), "type": "bench"}}, status=400)
    fmt, streamed = _format(request.path, dict(request.query), body)
    state.served[fmt] = state.served.get(fmt, 0) + 1
    usage = streamed and fmt == "openai" and _wants_usage(opts, body)
    key = (fmt, streamed, opts.tokens, opts.chunk_bytes, usage)
    reply = state.cache.get(
        key, lambda: _build(fmt, streamed, token_texts(opts.tokens, opts.chunk_bytes), usage)
    )
    if isinstance(reply, bytes):
        # Non-streamed: the whole generation time passes before the answer.
        if opts.delay_ms:
            await asyncio.sleep(opts.delay_ms * opts.tokens / 1000)
        return web.Response(body=reply, content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": reply.content_type})
    await resp.prepare(request)
    if not opts.delay_ms:
        # One write: the cheapest way to serve a 0 ms stream; the proxy still sees every event.
        await resp.write(reply.whole)
    else:
        await _paced(resp, reply, opts.delay_ms / 1000)
    await resp.write_eof()
    return resp


async def _paced(resp: web.StreamResponse, reply: Encoded, delay: float) -> None:
    # Token i is due at start + (i + 1) * delay: an absolute schedule, so timer slack does not
    # accumulate over a long stream; tokens already due when we wake up go in one write.
    loop = asyncio.get_running_loop()
    await resp.write(reply.head)
    start = loop.time()
    tokens = reply.tokens
    sent = 0
    while sent < len(tokens):
        now = loop.time()
        due = int((now - start) / delay)
        if due <= sent:
            await asyncio.sleep(start + (sent + 1) * delay - now)
            continue
        due = min(due, len(tokens))
        await resp.write(tokens[sent] if due == sent + 1 else b"".join(tokens[sent:due]))
        sent = due
    await resp.write(reply.tail)


async def set_config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        merged = msgspec.structs.asdict(state.options) | orjson.loads(await request.read())
        opts = msgspec.convert(merged, Options)
        opts.check()
    except (ValueError, msgspec.ValidationError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    state.options = opts
    return web.json_response(msgspec.structs.asdict(opts))


async def stats(request: web.Request) -> web.Response:
    served = request.app[STATE].served
    return web.json_response({"requests": sum(served.values()), "by_format": served})


def make_app(options: Options) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = State(options)
    app.router.add_post("/_bench/config", set_config)
    app.router.add_get("/_bench/stats", stats)
    app.router.add_post("/{tail:.*}", handle)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--chunk-bytes", type=int, default=4)
    parser.add_argument("--usage", choices=USAGE_MODES, default="auto")
    args = parser.parse_args(argv)
    options = Options(args.tokens, args.delay_ms, args.chunk_bytes, args.usage)
    options.check()
    run(serve_app(make_app(options), args.host, args.port, "mock upstream"))


if __name__ == "__main__":
    main()
