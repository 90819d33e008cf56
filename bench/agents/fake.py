"""The scripted fake upstream: one aiohttp server on loopback that speaks every format the
harness needs, picked by the path's ending (any base_url convention works):

| path ends with | format |
| --- | --- |
| `/chat/completions` | OpenAI Chat Completions |
| `/responses` | OpenAI Responses (a 404 when `chat_only`: a server with only chat, as most) |
| `/messages`, `/messages/count_tokens` | Anthropic Messages |
| `:generateContent`, `:streamGenerateContent`, `:countTokens` | Gemini |

Each answer follows the script in `bench.agents.script`, except that a JSON schema with a type
JSON Schema does not know (Gemini's "OBJECT") is refused with a 400, as OpenAI's and
Anthropic's APIs refuse it. Every request is recorded whole (the raw header list and body
bytes, as the client sent them): the fixtures are captured from it, and the runner reads from
it whether the tool call went out and its output came back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from bench.agents import reading, writing
from bench.agents.script import Reply, Turn, decide

HOST = "127.0.0.1"


@dataclass
class Exchange:
    """One request as it came, and what the fake made of it."""

    method: str
    path: str  # with the query string
    headers: list[tuple[str, str]]  # in order, with the client's own spelling
    body: bytes
    format: str = ""
    turn: Turn | None = None
    reply: Reply | None = None

    @property
    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


@dataclass
class _Format:
    read: Callable[[dict[str, Any]], Turn]
    stream: Callable[[Reply], list[bytes]]
    whole: Callable[[Reply], dict[str, Any]]


_FORMATS = {
    "chat": _Format(reading.read_chat, writing.chat_stream, writing.chat_whole),
    "messages": _Format(reading.read_messages, writing.messages_stream, writing.messages_whole),
    "gemini": _Format(reading.read_gemini, writing.gemini_stream, writing.gemini_whole),
    "responses": _Format(reading.read_responses, writing.responses_stream, writing.responses_whole),
}


# JSON Schema's types. OpenAI and Anthropic refuse a schema with any other (Gemini's "OBJECT"),
# Gemini takes its own upper-case spelling too.
_JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


def _foreign_type(schema: Any) -> str | None:
    """The first `type` in a schema that JSON Schema does not know, if there is one."""
    if isinstance(schema, list):
        return next((t for t in map(_foreign_type, schema) if t is not None), None)
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    for name in [kind] if isinstance(kind, str) else kind if isinstance(kind, list) else []:
        if isinstance(name, str) and name not in _JSON_TYPES:
            return name
    return next((t for t in map(_foreign_type, schema.values()) if t is not None), None)


def _refusal(name: str, turn: Turn) -> web.Response | None:
    """The 400 OpenAI's and Anthropic's APIs give a schema in Gemini's spelling."""
    if name == "gemini":
        return None
    schemas = [turn.schema, *(tool.schema for tool in turn.tools)]
    foreign = next((t for t in map(_foreign_type, schemas) if t is not None), None)
    if foreign is None:
        return None
    message = f"Invalid schema: {foreign!r} is not a valid JSON Schema type."
    if name == "messages":
        error = {"type": "invalid_request_error", "message": message}
        return web.json_response({"type": "error", "error": error}, status=400)
    error = {"message": message, "type": "invalid_request_error", "code": "invalid_json_schema"}
    return web.json_response({"error": error}, status=400)


@dataclass
class FakeUpstream:
    chat_only: bool = False
    exchanges: list[Exchange] = field(default_factory=list)
    url: str = ""  # http://127.0.0.1:PORT, once started
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        self.url = f"http://{HOST}:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        exchange = Exchange(request.method, request.path_qs, headers, await request.read())
        self.exchanges.append(exchange)
        path = request.path
        if request.method == "HEAD" or (request.method == "GET" and path == "/"):
            return web.Response()  # Claude Code's connectivity check
        if path.endswith("/messages/count_tokens"):
            return web.json_response({"input_tokens": writing.INPUT_TOKENS})
        if path.endswith(":countTokens"):
            return web.json_response({"totalTokens": writing.INPUT_TOKENS})
        if path.endswith("/chat/completions"):
            name, stream = "chat", None
        elif path.endswith("/responses") and not self.chat_only:
            name, stream = "responses", None
        elif path.endswith("/messages"):
            name, stream = "messages", None
        elif path.endswith(":streamGenerateContent"):
            name, stream = "gemini", True
        elif path.endswith(":generateContent"):
            name, stream = "gemini", False
        else:
            error = {"message": f"the fake serves no {request.method} {path}", "type": "not_found"}
            return web.json_response({"error": error}, status=404)
        body = exchange.json
        if not isinstance(body, dict):
            return web.json_response({"error": {"message": "a JSON object please"}}, status=400)
        form = _FORMATS[name]
        exchange.format, exchange.turn = name, form.read(body)
        refusal = _refusal(name, exchange.turn)
        if refusal is not None:
            return refusal
        exchange.reply = reply = decide(exchange.turn)
        if stream is None:
            stream = body.get("stream") is True
        if not stream:
            return web.json_response(form.whole(reply))
        if name == "gemini" and request.query.get("alt") != "sse":  # a JSON array, streamed
            parts = [orjson.dumps(writing.gemini_whole(reply))]
            return web.Response(
                body=b"[" + b",".join(parts) + b"]", content_type="application/json"
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in form.stream(reply):
            await response.write(piece)
            await asyncio.sleep(0)  # each event its own write, as a model streams
        await response.write_eof()
        return response

    # --- what the runner reads back ---------------------------------------------------------

    @property
    def model_turns(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.turn is not None]

    @property
    def called_tool(self) -> str | None:
        """The tool the fake called, if it did."""
        calls = [e.reply.call for e in self.model_turns if e.reply and e.reply.call]
        return calls[0].tool.name if calls else None

    @property
    def tool_outputs(self) -> list[str]:
        """Tool outputs that came back to the fake."""
        return [
            e.turn.tool_output
            for e in self.model_turns
            if e.turn and e.turn.tool_output is not None
        ]
