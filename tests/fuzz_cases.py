"""What the fuzz sends, where, and what it accepts back: shared by tests/test_fuzz.py (in the
suite) and tests/fuzz_gateway.py (10,000 requests against a gateway process).

- `Case`: one whole HTTP request (method, path, headers, body bytes), drawn by the strategies
  below for every route, streamed and not: arbitrary bytes and JSON, bodies shaped like each
  API's with wrong values in them (bridged Responses, Anthropic Messages, Gemini), valid bodies
  mutated, multipart forms with bad part headers, content encodings, control characters in
  model names, integers past 64 bits.
- `upstreams()`: the fake upstreams the gateway's providers call: one refuses everything
  (400), one answers each API correctly (OpenAI chat, completions, Responses, embeddings,
  speech, transcripts; Anthropic; Gemini), so that both the request translations and the
  answer translations meet the fuzz.
- `gateway_toml`: the mock, one provider of each translating type on the refusing upstream,
  and on the answering one: an OpenAI provider (native Responses), one with `responses =
  "bridge"`, an Anthropic one and a Gemini one. Requests to anthropic, gemini, mock and the
  bridge provider are translated (bridged) both ways.
- `problems(case, status, body)`: what is wrong with an answer: a 5xx, or an error whose body
  is not in the route's own shape (OpenAI's, Anthropic's on /v1/messages, Gemini's on
  /v1beta). An empty reply is the sender's to count (the connection closed unanswered).
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import threading
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple, Self
from urllib.parse import quote

import orjson
import uvloop
from aiohttp import ClientPayloadError, web
from hypothesis import strategies as st

from providers.mock import failures as mock_failures

FIXTURES = Path(__file__).parent / "fixtures"
TRANSLATING = ("openai", "azure", "anthropic", "gemini", "cohere", "ollama")
ANSWERING = ("ok-openai", "ok-bridge", "ok-anthropic", "ok-gemini")


class Case(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def __repr__(self) -> str:  # what a failing example shows
        return f"Case({self.method} {self.path} {self.headers} {self.body[:600]!r})"


# --- the upstreams ----------------------------------------------------------------------------


async def _refuse(request: web.Request) -> web.Response:
    await _read(request)
    return web.json_response({"error": {"message": "refused", "type": "invalid"}}, status=400)


async def _read(request: web.Request) -> bytes:
    try:
        return await request.read()
    except (ConnectionError, ClientPayloadError):
        raise web.HTTPBadRequest() from None  # the gateway let go of an upload: nobody hears


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in events)


_CHUNK = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
_USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
_CHAT_STREAM = (
    _sse(
        {**_CHUNK, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {**_CHUNK, "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {**_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**_CHUNK, "choices": [], "usage": _USAGE},
    )
    + b"data: [DONE]\n\n"
)
_CHAT = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
    ],
    "usage": _USAGE,
}
_COMPLETION = {
    "id": "c1",
    "object": "text_completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "text": "Hi", "finish_reason": "stop", "logprobs": None}],
    "usage": _USAGE,
}
_COMPLETION_STREAM = _sse(_COMPLETION) + b"data: [DONE]\n\n"
_EMBEDDINGS = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.5]}],
    "model": "m",
    "usage": {"prompt_tokens": 1, "total_tokens": 1},
}


async def _answer(request: web.Request) -> web.StreamResponse:
    """Each API's correct answer, streamed when asked (whatever else the request says)."""
    path = request.path
    raw = await _read(request)
    if request.content_type.startswith("multipart/"):
        return web.json_response({"text": "Hi"})
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    stream = isinstance(body, dict) and body.get("stream") is True
    sse = web.Response(content_type="text/event-stream")
    if path.endswith(":streamGenerateContent"):
        sse.body = _fixture("gemini/text_stream.sse")
    elif path.endswith(":generateContent"):
        return web.Response(body=_fixture("gemini/answer.json"), content_type="application/json")
    elif path.endswith("/messages/count_tokens"):
        return web.json_response({"input_tokens": 3})
    elif path.endswith("/messages"):
        if not stream:
            return web.Response(
                body=_fixture("anthropic/message.json"), content_type="application/json"
            )
        sse.body = _fixture("anthropic/text_stream.sse")
    elif path.endswith("/chat/completions"):
        if not stream:
            return web.json_response(_CHAT)
        sse.body = _CHAT_STREAM
    elif path.endswith("/completions"):
        if not stream:
            return web.json_response(_COMPLETION)
        sse.body = _COMPLETION_STREAM
    elif path.endswith("/responses"):
        if not stream:
            return web.Response(
                body=_fixture("openai/responses_text.json"), content_type="application/json"
            )
        sse.body = _fixture("openai/responses_text.sse")
    elif path.endswith("/embeddings"):
        return web.json_response(_EMBEDDINGS)
    elif path.endswith("/audio/speech"):
        return web.Response(body=b"RIFF\x24\x00\x00\x00WAVE", content_type="audio/wav")
    else:
        return web.json_response({"error": {"message": "no such route"}}, status=404)
    return sse


class Upstreams(NamedTuple):
    refusing: web.AppRunner
    answering: web.AppRunner

    @property
    def urls(self) -> tuple[str, str]:
        return tuple(  # type: ignore[return-value]
            f"http://127.0.0.1:{runner.addresses[0][1]}" for runner in self
        )

    async def cleanup(self) -> None:
        for runner in self:
            await runner.cleanup()


class ServedInThread:
    """Servers on a uvloop of their own thread, so that a blocking client (a fuzz run) can
    drive them: `start` brings them up and returns what stops them; a `with` block waits
    until they are up and stops them at its end."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=uvloop.run, args=(self._serve(),), daemon=True)

    async def start(self) -> Callable[[], Awaitable[None]]:
        raise NotImplementedError

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        stop = await self.start()
        self._ready.set()
        await self._stop.wait()
        await stop()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


async def upstreams() -> Upstreams:
    runners = []
    for handler in (_refuse, _answer):
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
    return Upstreams(*runners)


def gateway_toml(refusing: str, answering: str) -> str:
    tables = ["[providers.mock]\ntokens = 3\ndelay = 0\n"]
    tables += [
        f'[providers.{kind}]\ntype = "{kind}"\nbase_url = "{refusing}"\napi_key = "k"\n'
        for kind in TRANSLATING
    ]
    answering_types = {
        "ok-openai": 'type = "openai"\nresponses = "native"',
        "ok-bridge": 'type = "openai"\nresponses = "bridge"',
        "ok-anthropic": 'type = "anthropic"',
        "ok-gemini": 'type = "gemini"',
    }
    tables += [
        f'[providers.{name}]\n{kind}\nbase_url = "{answering}"\napi_key = "k"\n'
        for name, kind in answering_types.items()
    ]
    return "".join(tables)


# --- values -----------------------------------------------------------------------------------

BIG_INTEGERS = st.sampled_from(
    [2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, -(10**40), 2**200]
) | st.integers(min_value=2**64, max_value=2**80)
CONTROL_TEXT = st.text(
    alphabet=st.sampled_from(["\r", "\n", "\x00", "\x7f", "\t", "\x1b", "\u2028", "a"]),
    min_size=1,
    max_size=6,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | BIG_INTEGERS
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | CONTROL_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=25,
)

SERVED = ["mock/m", *(f"{t}/m" for t in TRANSLATING), *(f"{name}/m" for name in ANSWERING)]
BRIDGED = ["mock/m", "anthropic/m", "gemini/m", "ok-bridge/m", "ok-anthropic/m", "ok-gemini/m"]


def _not_a_mock_failure(name: str) -> bool:
    """The mock fails on demand for some names (`mock/status-500`): not the fuzz's to ask."""
    provider, _, model = name.partition("/")
    return provider != "mock" or mock_failures.parse_failure(model) is None


served_models = st.sampled_from(SERVED)
control_models = st.builds(
    lambda model, junk, at_end: model + junk if at_end else junk + model,
    served_models,
    CONTROL_TEXT,
    st.booleans(),
)
models = (
    served_models
    | st.sampled_from(["mock/", "mock", "/m", "other/m", "mock/a/b", "ok-gemini/a/b"])
    | control_models
    | st.text(max_size=12).filter(_not_a_mock_failure)
)

# --- routes -----------------------------------------------------------------------------------

OPENAI_JSON_ROUTES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/audio/speech",
)
ANTHROPIC_ROUTES = ("/v1/messages", "/v1/messages/count_tokens")
UPLOAD_ROUTES = ("/v1/audio/transcriptions", "/v1/audio/translations")
GET_ROUTES = ("/v1/models", "/health", "/v1/models/mock/m")
JSON_HEADERS = {"Content-Type": "application/json"}


def gemini_path(model: str, stream: bool, sse: bool) -> str:
    method = "streamGenerateContent" if stream else "generateContent"
    return f"/v1beta/models/{quote(model, safe='/')}:{method}" + ("?alt=sse" if sse else "")


def encode(value: Any) -> bytes:
    """As JSON, with the standard encoder (integers past 64 bits: orjson refuses them)."""
    return json.dumps(value).encode()


def json_case(path: str, body: Any) -> Case:
    return Case("POST", path, dict(JSON_HEADERS), encode(body))


# Valid bodies of every JSON route (`model` and `stream` filled in by `valid_case`).
_SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
VALID: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hi"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": 1}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": _SCHEMA}}],
        "tool_choice": "auto",
        "max_tokens": 5,
        "temperature": 0.5,
        "stream_options": {"include_usage": True},
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": _SCHEMA}},
    },
    "/v1/completions": {"prompt": "Hi", "max_tokens": 3},
    "/v1/responses": {
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Hi"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            {"type": "message", "role": "assistant", "content": "Done."},
        ],
        "instructions": "Be brief.",
        "tools": [{"type": "function", "name": "f", "parameters": _SCHEMA}],
        "tool_choice": "auto",
        "text": {"format": {"type": "json_schema", "name": "x", "schema": _SCHEMA}},
        "reasoning": {"effort": "low"},
        "max_output_tokens": 50,
        "metadata": {"k": "v"},
    },
    "/v1/embeddings": {"input": ["hello", "world"], "encoding_format": "float", "dimensions": 8},
    "/v1/audio/speech": {"input": "Hi", "voice": "alloy", "response_format": "wav"},
    "/v1/messages": {
        "max_tokens": 20,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hi"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Hm.", "signature": "c2ln"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
            },
        ],
        "tools": [{"name": "f", "input_schema": _SCHEMA}],
        "tool_choice": {"type": "auto"},
        "temperature": 0.5,
        "stop_sequences": ["STOP"],
        "metadata": {"user_id": "u"},
    },
    "/v1/messages/count_tokens": {"messages": [{"role": "user", "content": "Hi"}]},
    "gemini": {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Hi"},
                    {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
                ],
            },
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "f", "response": {"ok": True}}}],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.5, "maxOutputTokens": 20},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "f",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"a": {"type": "INTEGER"}},
                        },
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    },
}
_STREAMS = {"/v1/embeddings": False, "/v1/messages/count_tokens": False}


def _with_model(route: str, body: dict[str, Any], model: str, stream: bool) -> Case:
    """The request for `route` ("gemini": the model and stream go in the path)."""
    if route == "gemini":
        return json_case(gemini_path(model, stream, sse=stream), body)
    body = {"model": model, **body}
    if route == "/v1/audio/speech":
        body["stream_format"] = "sse" if stream else "audio"
    elif _STREAMS.get(route, True):
        body["stream"] = stream
    return json_case(route, body)


# --- mutation of valid bodies -----------------------------------------------------------------

_Path = tuple[Any, ...]


def _paths(value: Any, at: _Path = ()) -> list[_Path]:
    """Every place in a JSON value, the root first."""
    found = [at]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*at, index))
    return found


def _apply(value: Any, at: _Path, change: Callable[[Any], Any]) -> Any:
    """`value` with what is at `at` replaced by `change(it)` (`_DELETE`: taken out)."""
    if not at:
        return change(value)
    head, rest = at[0], at[1:]
    inner = _apply(value[head], rest, change)
    if inner is _DELETE:
        del value[head]
    else:
        value[head] = inner
    return value


_DELETE = object()
_WRONG = st.sampled_from([None, 0, -1, 1.5, "", "x", True, [], {}, [1], {"a": 1}, 2**64])
FIELD_NAMES = st.sampled_from(
    [
        "model",
        "models",
        "fallbacks",
        "stream",
        "content",
        "type",
        "role",
        "text",
        "parts",
        "input",
        "messages",
        "tools",
        "tool_choice",
        "dimensions",
        "max_tokens",
        "n",
        "schema",
        "parameters",
        "minItems",
        "minLength",
        "$ref",
        "allOf",
        "items",
        "properties",
        "required",
        "multipleOf",
    ]
)


@st.composite
def mutated(draw: st.DrawFn, body: Any) -> Any:
    """`body` with one to three of its places replaced, wrongly typed, taken out or added to."""
    body = copy.deepcopy(body)
    for _ in range(draw(st.integers(1, 3))):
        places = _paths(body)
        at = places[draw(st.integers(0, len(places) - 1))]
        kind = draw(st.sampled_from(["replace", "wrong", "delete", "add", "wrap", "big", "ctl"]))
        if kind == "delete" and at:
            body = _apply(body, at, lambda _: _DELETE)
        elif kind == "add":
            # Copies: a sampled value is shared between draws, and later steps change it.
            key, value = draw(FIELD_NAMES), copy.deepcopy(draw(json_values | _WRONG))

            def add(it: Any, key: str = key, value: Any = value) -> Any:
                if isinstance(it, dict):
                    return {**it, key: value}
                return [*it, value] if isinstance(it, list) else it

            body = _apply(body, at, add)
        elif kind == "wrap":
            body = _apply(body, at, lambda it: [it])
        else:
            strategy = {"big": BIG_INTEGERS, "ctl": CONTROL_TEXT, "wrong": _WRONG}.get(
                kind, json_values
            )
            new = copy.deepcopy(draw(strategy))
            body = _apply(body, at, lambda _, new=new: new)
    return body


# --- cases ------------------------------------------------------------------------------------

JSON_ROUTE_NAMES = tuple(VALID)


@st.composite
def valid_case(draw: st.DrawFn, routes: tuple[str, ...] = JSON_ROUTE_NAMES) -> Case:
    route = draw(st.sampled_from(routes))
    return _with_model(route, VALID[route], draw(served_models), draw(st.booleans()))


@st.composite
def mutated_case(draw: st.DrawFn, routes: tuple[str, ...] = JSON_ROUTE_NAMES) -> Case:
    """A valid body of a route, with its model and stream, then mutated (the model too)."""
    route = draw(st.sampled_from(routes))
    stream = draw(st.booleans())
    model = draw(served_models)
    if route == "gemini":
        return json_case(
            gemini_path(model, stream, draw(st.booleans())), draw(mutated(VALID[route]))
        )
    whole = orjson.loads(_with_model(route, VALID[route], model, stream).body)
    return json_case(route, draw(mutated(whole)))


@st.composite
def big_integer_case(draw: st.DrawFn) -> Case:
    """A valid body with an integer past 64 bits put somewhere in it (or added to it)."""
    case = draw(valid_case())
    body = orjson.loads(case.body)
    places = _paths(body)
    at = places[draw(st.integers(0, len(places) - 1))]
    number = draw(BIG_INTEGERS)
    if draw(st.booleans()) or not at:
        body = _apply(body, at, lambda it: {**it, "x": number} if isinstance(it, dict) else number)
    else:
        body = _apply(body, at, lambda _: number)
    return case._replace(body=encode(body))


@st.composite
def control_model_case(draw: st.DrawFn) -> Case:
    """A model name with control characters, where each route takes a model: the body, the
    Gemini path, a multipart field, `fallbacks` and `models`."""
    model = draw(control_models)
    stream = draw(st.booleans())
    where = draw(st.sampled_from(["body", "gemini", "upload", "fallbacks", "models"]))
    if where == "gemini":
        return json_case(gemini_path(model, stream, stream), VALID["gemini"])
    if where == "upload":
        return upload_case(
            draw(st.sampled_from(UPLOAD_ROUTES)),
            [(b"model", model.encode()), (b"stream", b"true" if stream else b"false")],
            file=(b"a.wav", b"audio/wav", b"RIFF"),
        )
    route = draw(st.sampled_from([r for r in JSON_ROUTE_NAMES if r != "gemini"]))
    if where == "body":
        return _with_model(route, VALID[route], model, stream)
    case = _with_model(route, VALID[route], draw(served_models), stream)
    body = orjson.loads(case.body)
    body[where] = [model]
    return case._replace(body=encode(body))


# Responses bodies as the chat bridge reads them, with any value where a client could put one.
_responses_parts = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["input_text", "output_text", "text", "input_image", "x"])
        | json_values
    },
    optional={
        "text": json_values,
        "image_url": json_values,
        "file_id": json_values,
        "detail": json_values,
    },
)
_responses_items = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            ["message", "function_call", "function_call_output", "reasoning", "x"]
        )
        | json_values,
        "role": st.sampled_from(["user", "assistant", "system", "developer"]) | json_values,
        "content": st.text(max_size=10)
        | st.lists(_responses_parts | json_values, max_size=3)
        | json_values,
        "call_id": json_values,
        "name": json_values,
        "arguments": json_values,
        "output": json_values,
    },
)
responses_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(BRIDGED) | models},
    optional={
        "input": st.text(max_size=10)
        | st.lists(_responses_items | json_values, max_size=4)
        | json_values,
        "instructions": json_values,
        "stream": st.booleans() | json_values,
        "tools": st.lists(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["function", "web_search"]) | json_values},
                optional={"name": json_values, "parameters": json_values},
            ),
            max_size=2,
        )
        | json_values,
        "tool_choice": st.sampled_from(["auto", "none", "required"]) | json_values,
        "text": st.fixed_dictionaries({}, optional={"format": json_values}) | json_values,
        "reasoning": st.fixed_dictionaries({}, optional={"effort": json_values}) | json_values,
        "max_output_tokens": json_values,
        "metadata": json_values,
        "temperature": json_values,
        "previous_response_id": json_values,
    },
)

# Anthropic Messages bodies: blocks of every type, any value in them.
_anthropic_blocks = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "text",
                "image",
                "document",
                "tool_use",
                "tool_result",
                "thinking",
                "redacted_thinking",
                "x",
            ]
        )
        | json_values
    },
    optional={
        "text": json_values,
        "source": st.fixed_dictionaries(
            {"type": st.sampled_from(["base64", "url", "file", "text"]) | json_values},
            optional={"media_type": json_values, "data": json_values, "url": json_values},
        )
        | json_values,
        "id": json_values,
        "name": json_values,
        "input": json_values,
        "tool_use_id": json_values,
        "content": json_values,
        "thinking": json_values,
        "signature": json_values,
        "cache_control": json_values,
    },
)
messages_bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from(BRIDGED) | models,
        "max_tokens": st.integers(-2, 50) | json_values,
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "assistant"]) | json_values},
                optional={
                    "content": st.text(max_size=10)
                    | st.lists(_anthropic_blocks, max_size=3)
                    | json_values
                },
            ),
            max_size=3,
        )
        | json_values,
    },
    optional={
        "system": json_values | st.lists(_anthropic_blocks, max_size=2),
        "stream": st.booleans(),
        "tools": st.lists(
            st.fixed_dictionaries(
                {"name": json_values},
                optional={"input_schema": json_values, "type": json_values},
            ),
            max_size=2,
        )
        | json_values,
        "tool_choice": json_values,
        "thinking": json_values,
        "metadata": json_values,
        "stop_sequences": json_values,
        "temperature": json_values,
        "output_config": json_values,
    },
)

# Gemini GenerateContentRequest bodies: parts of every kind, any value in them.
_gemini_parts = st.fixed_dictionaries(
    {},
    optional={
        "text": json_values,
        "inlineData": json_values,
        "inline_data": json_values,
        "fileData": json_values,
        "functionCall": json_values,
        "functionResponse": json_values,
        "thought": json_values,
        "thoughtSignature": json_values,
    },
)
gemini_bodies = st.fixed_dictionaries(
    {
        "contents": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "role": st.sampled_from(["user", "model", "x"]) | json_values,
                    "parts": st.lists(_gemini_parts, max_size=3) | json_values,
                },
            ),
            max_size=3,
        )
        | json_values
    },
    optional={
        "systemInstruction": json_values,
        "generationConfig": st.fixed_dictionaries(
            {},
            optional={
                "temperature": json_values,
                "maxOutputTokens": json_values,
                "responseMimeType": json_values,
                "responseSchema": json_values,
                "thinkingConfig": json_values,
                "stopSequences": json_values,
                "candidateCount": json_values,
            },
        )
        | json_values,
        "tools": json_values,
        "toolConfig": json_values,
        "safetySettings": json_values,
    },
)


@st.composite
def gemini_case(draw: st.DrawFn) -> Case:
    model = draw(st.sampled_from(BRIDGED) | models)
    stream = draw(st.booleans())
    body = draw(gemini_bodies | json_values)
    return json_case(gemini_path(model, stream, draw(st.booleans())), body)


@st.composite
def valid_upload_case(draw: st.DrawFn) -> Case:
    """A well-formed transcription or translation form, streamed or not."""
    fields = [
        (b"model", draw(st.sampled_from([b"mock/w", b"ok-openai/w", b"openai/w"]))),
        (b"stream", draw(st.sampled_from([b"true", b"false"]))),
        (b"response_format", draw(st.sampled_from([b"json", b"text", b"verbose_json"]))),
    ]
    return upload_case(
        draw(st.sampled_from(UPLOAD_ROUTES)), fields, (b"a.wav", b"audio/wav", b"RIFF....WAVE")
    )


# Multipart forms: part headers with bytes that are not UTF-8, repeated `model` fields.
_HEADER_BYTES = st.sampled_from([b"\xff", b"\xc3(", b"\x80abc", b"\xed\xa0\x80", b"\x00", b""])


@st.composite
def upload_part_case(draw: st.DrawFn) -> Case:
    route = draw(st.sampled_from(UPLOAD_ROUTES))
    model = draw(st.sampled_from(["mock/w", "ok-openai/w", "openai/w"]))
    fields: list[tuple[bytes, bytes]] = [(b"model", model.encode())]
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([b"model", b"stream", b"language", b"response_format", b"x"]))
        junk = draw(_HEADER_BYTES) if draw(st.booleans()) else b""
        fields.append((name + junk, draw(st.sampled_from([b"mock/w", b"true", b"json", b"\xff"]))))
    filename = b"a" + draw(_HEADER_BYTES) + b".wav"
    file_type = b"audio/" + draw(_HEADER_BYTES) + b"wav"
    after = [(b"model", b"openai/w")] if draw(st.booleans()) else []
    return upload_case(route, fields, file=(filename, file_type, b"RIFF"), after=after)


def upload_case(
    route: str,
    fields: list[tuple[bytes, bytes]],
    file: tuple[bytes, bytes, bytes] | None,
    after: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    close: bool = True,
) -> Case:
    """A multipart form: `fields`, the file (its name, type, bytes), the fields `after` it."""

    def field(name: bytes, value: bytes) -> bytes:
        return (
            b'--x\r\nContent-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value + b"\r\n"
        )

    out = b"".join(field(name, value) for name, value in fields)
    if file is not None:
        filename, file_type, data = file
        out += b'--x\r\nContent-Disposition: form-data; name="file"; filename="' + filename
        out += b'"\r\nContent-Type: ' + file_type + b"\r\n\r\n" + data + b"\r\n"
    out += b"".join(field(name, value) for name, value in after)
    out += b"--x--\r\n" if close else b""
    return Case("POST", route, {"Content-Type": "multipart/form-data; boundary=x"}, out)


# Content encodings: each coding name, with a body encoded that way, another way, or not at all.
_CODINGS = st.sampled_from(
    [
        "gzip",
        "x-gzip",
        "deflate",
        "br",
        "zstd",
        "identity",
        "compress",
        "foo",
        "gzip, gzip",
        "GZIP",
        "",
    ]
)
_ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "zlib": zlib.compress,
    "raw-deflate": lambda data: zlib.compress(data, wbits=-15),
    "none": lambda data: data,
    "cut-gzip": lambda data: gzip.compress(data)[:-9],
    "garbage": lambda data: b"\x1f\x8b\x08garbage" + data,
}


@st.composite
def encoded_case(draw: st.DrawFn) -> Case:
    case = draw(valid_case() | upload_part_case())
    coding = draw(_CODINGS)
    body = _ENCODERS[draw(st.sampled_from(sorted(_ENCODERS)))](case.body)
    return case._replace(headers={**case.headers, "Content-Encoding": coding}, body=body)


# JSON schemas (a tool's parameters, a response_format's schema), for the mock's instances of
# them: every keyword it reads, with sub-schemas or any value.
_SCHEMA_KEYWORDS = st.sampled_from(
    [
        "type",
        "properties",
        "required",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "$defs",
        "definitions",
        "additionalProperties",
        "format",
    ]
)
_SCHEMA_VALUES = (
    st.sampled_from(["object", "array", "string", "integer", "number", "boolean", "null"])
    | st.sampled_from(["#", "#/$defs/a", "#/properties/a", "#/definitions/0", "#/x/1", "http://x"])
    | st.integers(-3, 10**9)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_values
)
schemas = st.recursive(
    st.dictionaries(_SCHEMA_KEYWORDS, _SCHEMA_VALUES, max_size=4) | st.booleans(),
    lambda children: st.dictionaries(
        _SCHEMA_KEYWORDS,
        children
        | st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "0"]), children, max_size=3)
        | _SCHEMA_VALUES,
        max_size=5,
    ),
    max_leaves=20,
)


@st.composite
def schema_case(draw: st.DrawFn) -> Case:
    """Chat with a tool or structured output whose schema is drawn, or embeddings with any
    `dimensions`, mostly to the mock (which answers with an instance of the schema)."""
    model = draw(st.sampled_from(["mock/m", "mock/m", "ok-openai/m", "anthropic/m"]))
    stream = draw(st.booleans())
    if draw(st.integers(0, 3)) == 0:
        dimensions = draw(st.integers(-5, 10**7) | st.sampled_from([0, 1, 3072, 3073]) | _WRONG)
        body = {"model": model, "input": draw(st.sampled_from(["hi", ["a", "b"], [[1, 2]], []]))}
        return json_case("/v1/embeddings", {**body, "dimensions": dimensions})
    schema = draw(schemas | _WRONG)
    body: dict[str, Any] = {
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    if draw(st.booleans()):
        body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
        body["tool_choice"] = draw(st.sampled_from(["auto", "required"]))
    else:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": schema},
        }
    return json_case("/v1/chat/completions", body)


# --- the older, shapeless strategies ----------------------------------------------------------

OPENAI_FIELDS = (
    "model",
    "messages",
    "prompt",
    "input",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "n",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "response_format",
    "instructions",
    "previous_response_id",
    "encoding_format",
    "dimensions",
    "voice",
    "stream_format",
    "speed",
    "reasoning",
    "models",
    "fallbacks",
)
request_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": models,
        **{field: json_values for field in OPENAI_FIELDS if field != "model"},
    },
) | st.dictionaries(st.sampled_from(OPENAI_FIELDS), json_values, max_size=6)

# Chat bodies shaped like real requests, with arbitrary values where a client could put
# anything: they pass the gateway's own checks and reach each provider's translation.
content_parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio", "file", "input_text", "x"])},
    optional={
        "text": json_values,
        "image_url": json_values
        | st.fixed_dictionaries(
            {"url": st.sampled_from(["data:image/png;base64,AAAA", "data:,", "http://x/y.png"])}
        ),
        "input_audio": json_values,
    },
)
chat_messages = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", "developer", "x"])},
    optional={
        "content": st.text(max_size=20) | st.lists(content_parts, max_size=3) | json_values,
        "tool_calls": json_values
        | st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.text(max_size=5),
                    "type": st.just("function"),
                    "function": st.fixed_dictionaries(
                        {"name": st.text(max_size=5), "arguments": st.text(max_size=20)}
                    ),
                }
            ),
            max_size=2,
        ),
        "tool_call_id": json_values,
        "reasoning": json_values,
        "reasoning_signature": json_values,
    },
)
chat_tools = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["function", "x"]),
        "function": st.fixed_dictionaries(
            {"name": st.text(max_size=8)}, optional={"parameters": json_values}
        ),
    }
)
chat_bodies = st.fixed_dictionaries(
    {"model": models, "messages": st.lists(chat_messages, max_size=4)},
    optional={
        "input": st.text(max_size=10) | st.lists(chat_messages | content_parts, max_size=3),
        "prompt": json_values,
        "tools": st.lists(chat_tools, max_size=2) | json_values,
        "tool_choice": st.sampled_from(["auto", "none", "required"]) | json_values,
        "response_format": json_values,
        "stream": st.booleans(),
        "max_tokens": st.integers(-5, 10),
        "n": st.integers(-1, 3),
        "reasoning_effort": json_values,
        "stop": json_values,
        "instructions": json_values,
        "dimensions": json_values | st.integers(-3, 5000),
        "encoding_format": st.sampled_from(["float", "base64"]),
    },
)


@st.composite
def json_route_case(draw: st.DrawFn) -> Case:
    """Any JSON, or a body shaped like some route's, to any JSON route."""
    route = draw(st.sampled_from((*OPENAI_JSON_ROUTES, *ANTHROPIC_ROUTES, "gemini")))
    body = draw(
        chat_bodies
        | request_bodies
        | responses_bodies
        | messages_bodies
        | gemini_bodies
        | json_values
    )
    if route == "gemini":
        model = draw(st.sampled_from(BRIDGED) | models)
        return json_case(gemini_path(model, draw(st.booleans()), draw(st.booleans())), body)
    return json_case(route, body)


@st.composite
def bytes_case(draw: st.DrawFn) -> Case:
    """Arbitrary bytes, under any content type, to any route."""
    path = draw(
        st.sampled_from(
            (
                *OPENAI_JSON_ROUTES,
                *ANTHROPIC_ROUTES,
                *UPLOAD_ROUTES,
                *GET_ROUTES,
                gemini_path("mock/m", False, False),
                gemini_path("ok-gemini/m", True, True),
            )
        )
    )
    content_type = draw(
        st.sampled_from(
            [
                "application/json",
                None,
                "text/plain",
                "multipart/form-data; boundary=x",
                "multipart/form-data",
                "application/json; charset=latin-1",
            ]
        )
    )
    headers = {"Content-Type": content_type} if content_type else {}
    method = "GET" if path in GET_ROUTES else "POST"
    return Case(method, path, headers, draw(st.binary(max_size=600)))


@st.composite
def form_case(draw: st.DrawFn) -> Case:
    fields = draw(
        st.lists(
            st.tuples(
                st.sampled_from([b"model", b"stream", b"language", b"response_format", b"x"]),
                st.sampled_from([b"mock/w", b"ok-openai/w", b"true", b"json", b"text", b"srt"])
                | st.binary(max_size=40),
            ),
            max_size=6,
        )
    )
    file = draw(st.none() | st.binary(max_size=200))
    return upload_case(
        draw(st.sampled_from(UPLOAD_ROUTES)),
        fields,
        None if file is None else (b"a.wav", b"application/octet-stream", file),
        close=draw(st.booleans()),
    )


# Every kind of case, for the run against a gateway process; valid and mutated bodies drawn
# more often, so that answers (and streams) are translated too.
any_case = st.one_of(
    bytes_case(),
    json_route_case(),
    form_case(),
    valid_case(),
    valid_case(),
    valid_case(),
    valid_upload_case(),
    mutated_case(),
    mutated_case(),
    mutated_case(),
    schema_case(),
    big_integer_case(),
    control_model_case(),
    st.builds(lambda body: json_case("/v1/responses", body), responses_bodies),
    st.builds(lambda body: json_case("/v1/messages", body), messages_bodies),
    gemini_case(),
    upload_part_case(),
    encoded_case(),
)

# --- what an answer must be -------------------------------------------------------------------


def error_shape(method: str, path: str) -> str:
    """Whose error shape the route answers in (its routes are added with it: gateway.routes)."""
    if method == "POST" and path.startswith("/v1/messages"):
        return "anthropic"
    if method == "POST" and path.startswith(("/v1beta/models/", "/v1/models/")):
        return "gemini"
    return "openai"


def problems(case: Case, status: int, body: bytes) -> list[str]:
    """What is wrong with `case`'s answer: a 5xx, or an error not in the route's shape."""
    if status >= 500:
        return [f"status {status}: {body[:300]!r}"]
    if status < 400:
        return []
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [f"a {status} whose body is not JSON: {body[:300]!r}"]
    shape = error_shape(case.method, case.path.split("?")[0])
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return [f"a {status} without an error message: {body[:300]!r}"]
    if not error["message"]:
        return [f"a {status} with an empty message"]
    expected = {
        "openai": ({"error"}, {"message", "type", "param", "code"}),
        "anthropic": ({"type", "error"}, {"type", "message"}),
        "gemini": ({"error"}, {"code", "message", "status"}),
    }[shape]
    if set(answer) != expected[0] or set(error) != expected[1]:
        return [f"a {status} not in {shape}'s error shape: {body[:300]!r}"]
    return []
