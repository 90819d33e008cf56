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
from typing import Any, cast

import msgspec
import orjson

from bench.common import run, wait_for_stop
from bench.wire import (
    END_HEAD,
    LAST_CHUNK,
    MAX_HEAD,
    ChunkedDecoder,
    Head,
    ProtocolError,
    chunk,
    parse_head,
)

MODEL = "mock-model"
CREATED = 1_700_000_000
PROMPT_TOKENS = 12
# Cycled to make token texts: ASCII only, so no JSON escaping and len(text) == bytes.
TEXT = " lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor"
USAGE_MODES = ("auto", "always", "never")  # auto: as OpenAI, only if include_usage
MIN_SLEEP_S = 0.001  # uvloop's timers count whole milliseconds
REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


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
    """A streamed reply, pre-encoded: `head`, one item per token, `tail`, and the same already
    framed as HTTP chunks, so serving it costs writes only."""

    content_type: str
    head: bytes
    tokens: list[bytes]
    tail: bytes
    http_head: bytes = field(init=False)  # status line, headers and the framed `head`
    http_tokens: list[bytes] = field(init=False)
    http_tail: bytes = field(init=False)  # the framed `tail` and the last chunk
    http_whole: bytes = field(init=False)  # everything: one write for a 0 ms stream

    def __post_init__(self) -> None:
        self.http_head = response_head(200, self.content_type, None) + _chunk(self.head)
        self.http_tokens = [chunk(t) for t in self.tokens]
        self.http_tail = _chunk(self.tail) + LAST_CHUNK
        whole = self.head + b"".join(self.tokens) + self.tail
        self.http_whole = response_head(200, self.content_type, None) + _chunk(whole) + LAST_CHUNK


def _chunk(data: bytes) -> bytes:
    return chunk(data) if data else b""


def response_head(status: int, content_type: str, length: int | None) -> bytes:
    framing = b"Transfer-Encoding: chunked" if length is None else b"Content-Length: %d" % length
    return b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%s\r\n\r\n" % (
        status,
        REASONS.get(status, b"Unknown"),
        content_type.encode(),
        framing,
    )


def response(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    return response_head(status, content_type, len(body)) + body


def error_response(status: int, message: str) -> bytes:
    return response(status, orjson.dumps({"error": {"message": message, "type": "mock_upstream"}}))


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
    return response(
        200,
        orjson.dumps(
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
        ),
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
    return response(
        200,
        orjson.dumps(
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
        ),
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
    return response(200, orjson.dumps(_gemini("".join(texts), len(texts), True)))


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
    return response(200, orjson.dumps(_ollama("".join(texts), True, len(texts))))


Reply = Encoded | bytes  # bytes: a whole HTTP response (non-streamed answers, errors)


class Cache:
    """Encoded replies keyed by shape; bounded, since a run only ever uses a few shapes."""

    def __init__(self, limit: int = 64) -> None:
        self._items: dict[tuple[Any, ...], Reply] = {}
        self._limit = limit

    def get(self, key: tuple[Any, ...], build: Callable[[], Reply]) -> Reply:
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
    trace_exports: int = 0  # OTLP batches the tracing variants sent


def _options(state: State, body: dict[str, Any]) -> Options:
    extra = body.get("bench")
    if not isinstance(extra, dict):
        return state.options
    return _merged(state.options, extra)


def _merged(options: Options, changes: dict[str, Any]) -> Options:
    opts = msgspec.convert(msgspec.structs.asdict(options) | changes, Options)
    opts.check()
    return opts


def _wants_usage(opts: Options, body: dict[str, Any]) -> bool:
    if opts.usage != "auto":
        return opts.usage == "always"
    so = body.get("stream_options")
    return isinstance(so, dict) and bool(so.get("include_usage"))


def _format(path: bytes, query: bytes, body: dict[str, Any]) -> tuple[str, bool] | None:
    """(format, streamed) from the path, the query and the body; None for an unknown path."""
    if path.endswith(b"/chat/completions"):
        return "openai", bool(body.get("stream"))
    if path.endswith(b"/messages"):
        return "anthropic", bool(body.get("stream"))
    if path.endswith(b":streamGenerateContent"):
        return ("gemini-sse" if b"alt=sse" in query else "gemini-array"), True
    if path.endswith(b":generateContent"):
        return "gemini", False
    if path.endswith(b"/api/chat"):
        return "ollama", body.get("stream", True) is not False  # Ollama streams by default
    return None


def _build(fmt: str, streamed: bool, texts: list[str], usage: bool) -> Reply:
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


def _reply(state: State, opts: Options, fmt: str, streamed: bool, usage: bool) -> Reply:
    key = (fmt, streamed, opts.tokens, opts.chunk_bytes, usage)
    return state.cache.get(
        key, lambda: _build(fmt, streamed, token_texts(opts.tokens, opts.chunk_bytes), usage)
    )


# OTLP/HTTP's trace export path: the mock upstream is the tracing variants' collector too.
OTLP_TRACES = b"/v1/traces"
# A path under this prefix answers 503 at once (the failover scenario's first target).
FAIL_503 = b"/fail503/"

# The shapes the bench's scenarios ask for: (format, streamed, usage chunk).
PREBUILT = (
    ("openai", True, True),
    ("openai", True, False),
    ("openai", False, False),
    ("anthropic", True, False),
    ("anthropic", False, False),
)


class UpstreamProtocol(asyncio.Protocol):
    """One client connection: requests one at a time, answered from the cache.

    A 0 ms reply is written from `data_received` in one call; a paced one runs as a task,
    and requests that arrive meanwhile wait in the buffer.
    """

    def __init__(self, state: State) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.task: asyncio.Task[None] | None = None
        self.close_after = False
        self.writable: asyncio.Future[None] | None = None  # set while the transport is paused

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.task is None:
            self.serve()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None:
            self.task.cancel()
        self.resume_writing()

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def serve(self) -> None:
        transport = self.transport
        assert transport is not None
        while self.task is None and not transport.is_closing():
            try:
                request = self.next_request()
                if request is None:
                    return
                head, body = request
                self.close_after = head.close
                self.respond(head, body)
            except (ProtocolError, ValueError) as exc:
                transport.write(error_response(400, f"bad request: {exc}"))
                transport.close()
                return
            if self.task is None and self.close_after:
                transport.close()

    def next_request(self) -> tuple[Head, bytes] | None:
        buf = self.buf
        end = buf.find(END_HEAD)
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise ProtocolError("request head too long")
            return None
        head = parse_head(buf, end)
        start = end + 4
        if head.chunked:
            decoder = ChunkedDecoder()
            pieces = decoder.feed(buf[start:])
            if not decoder.done:
                return None  # decoded again, whole, once the rest arrives: rare, and simple
            self.buf = decoder.rest
            return head, b"".join(pieces)
        stop = start + (head.length or 0)
        if len(buf) < stop:
            return None
        self.buf = buf[stop:]
        return head, buf[start:stop]

    def respond(self, head: Head, raw: bytes) -> None:
        transport = self.transport
        assert transport is not None
        state = self.state
        method, target = head.first[0], head.first[1]
        path, _, query = target.partition(b"?")
        if path == b"/_bench/stats":
            served = {
                "requests": sum(state.served.values()),
                "by_format": state.served,
                "trace_exports": state.trace_exports,
            }
            transport.write(response(200, orjson.dumps(served)))
            return
        if method != b"POST":
            transport.write(error_response(405, "mock upstream: POST only"))
            return
        if path == OTLP_TRACES:  # the tracing variants' collector: taken, not read
            state.trace_exports += 1
            transport.write(response(200, b"", "application/x-protobuf"))
            return
        try:
            body = orjson.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise ValueError("the body is not a JSON object")
            if path == b"/_bench/config":
                state.options = _merged(state.options, body)
                # Encode the run's replies now, not in its first request's TTFT.
                for fmt, streamed, usage in PREBUILT:
                    _reply(state, state.options, fmt, streamed, usage)
                transport.write(response(200, orjson.dumps(msgspec.structs.asdict(state.options))))
                return
            opts = _options(state, body)
        except (ValueError, msgspec.ValidationError) as exc:
            transport.write(error_response(400, f"mock upstream: {exc}"))
            return
        found = _format(path, query, body)
        if found is None:
            where = target.decode(errors="replace")
            transport.write(error_response(404, f"mock upstream: no wire format for {where}"))
            return
        fmt, streamed = found
        if path.startswith(FAIL_503):
            transport.write(error_response(503, "mock upstream: 503 on demand"))
            return
        state.served[fmt] = state.served.get(fmt, 0) + 1
        usage = streamed and fmt == "openai" and _wants_usage(opts, body)
        reply = _reply(state, opts, fmt, streamed, usage)
        if not opts.delay_ms:
            # One write: the cheapest way to serve; the proxy still sees every event.
            transport.write(reply if isinstance(reply, bytes) else reply.http_whole)
            return
        delay = opts.delay_ms / 1000
        if isinstance(reply, bytes):
            coro = self.later(reply, delay * opts.tokens)  # the whole generation, then all
        else:
            coro = self.paced(reply, delay)
        self.task = asyncio.get_running_loop().create_task(coro)
        self.task.add_done_callback(self.done)

    async def later(self, reply: bytes, seconds: float) -> None:
        await asyncio.sleep(seconds)
        assert self.transport is not None
        self.transport.write(reply)

    async def paced(self, reply: Encoded, delay: float) -> None:
        # Token i is due at start + (i + 1) * delay: an absolute schedule, so timer slack
        # does not accumulate over a long stream; tokens already due go out in one write.
        transport = self.transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        transport.write(reply.http_head)
        start = loop.time()
        tokens = reply.http_tokens
        sent = 0
        while sent < len(tokens):
            now = loop.time()
            due = min(int((now - start) / delay), len(tokens))
            if due <= sent:
                # Never less than the loop's timer resolution: a shorter sleep returns at
                # once and would spin this core, which the load generator shares.
                await asyncio.sleep(max(start + (sent + 1) * delay - now, MIN_SLEEP_S))
                continue
            transport.write(tokens[sent] if due == sent + 1 else b"".join(tokens[sent:due]))
            sent = due
            if self.writable is not None:  # the client reads slower than we write: wait
                await self.writable
        transport.write(reply.http_tail)

    def done(self, task: asyncio.Task[None]) -> None:
        self.task = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if task.cancelled() or task.exception() is not None or self.close_after:
            transport.close()
        elif self.buf:
            self.serve()


async def serve(host: str, port: int, options: Options) -> None:
    state = State(options)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: UpstreamProtocol(state), host, port, backlog=1024, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    try:
        await wait_for_stop(f"mock upstream listening on http://{host}:{bound}")
    finally:
        server.close()  # open keep-alive connections are dropped with the loop: no waiting


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
    run(serve(args.host, args.port, options))


if __name__ == "__main__":
    main()
