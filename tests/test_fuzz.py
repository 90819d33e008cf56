"""Arbitrary bytes and arbitrary JSON posted to every route: the answer is a success or a 4xx in
OpenAI's shape, never a 5xx, and nothing is logged as an error or with a traceback.

The gateway runs in a thread with its own event loop, so that hypothesis drives a plain
synchronous client; examples are bounded to keep this to seconds. Its providers: the mock,
and one of each translating type in front of an upstream that refuses everything with a 400,
so that each provider's request translation meets the arbitrary input.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import app as gateway_app
from gateway.config import parse

JSON_ROUTES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/audio/speech",
)
UPLOAD_ROUTES = ("/v1/audio/transcriptions", "/v1/audio/translations")
GET_ROUTES = ("/v1/models", "/health")
FIELDS = (
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
    "response_format",
    "stream_format",
    "speed",
    "reasoning",
)
TRANSLATING = ("openai", "azure", "anthropic", "gemini", "cohere", "ollama")
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples every run: a failure here is reproducible
)


async def _refuse(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"error": {"message": "refused", "type": "invalid"}}, status=400)


class _Problems(logging.Handler):
    """Every log record that is an error or carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


class _Gateway:
    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        refusing = web.Application()
        refusing.router.add_route("*", "/{tail:.*}", _refuse)
        upstream = web.AppRunner(refusing, access_log=None)
        await upstream.setup()
        await web.TCPSite(upstream, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{upstream.addresses[0][1]}"
        toml = "[providers.mock]\ntokens = 3\ndelay = 0\n" + "".join(
            f'[providers.{kind}]\ntype = "{kind}"\nbase_url = "{base}"\napi_key = "k"\n'
            for kind in TRANSLATING
        )
        runner, url = await gateway_app.start(parse(toml, "fuzz.toml"), "127.0.0.1", 0)
        self.port = int(url.rsplit(":", 1)[1])
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()
        await upstream.cleanup()

    def __enter__(self) -> _Gateway:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[_Gateway, _Problems]]:
    problems = _Problems()
    logging.getLogger().addHandler(problems)
    try:
        with _Gateway() as running:
            yield running, problems
    finally:
        logging.getLogger().removeHandler(problems)


def _post(
    gateway: _Gateway, method: str, path: str, body: bytes, content_type: str | None
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _check(status: int, body: bytes, problems: _Problems, sent: Any) -> None:
    assert status < 500, (status, body[:500], sent)
    if status >= 400:
        error = orjson.loads(body)["error"]
        assert set(error) == {"message", "type", "param", "code"}, body
        assert isinstance(error["message"], str) and error["message"]
    assert not problems.records, [r.getMessage() for r in problems.records]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=25,
)
models = st.sampled_from(
    ["mock/m", "mock/", "mock", "/m", "other/m", "mock/a/b", *(f"{t}/m" for t in TRANSLATING)]
) | st.text(max_size=12)
request_bodies = st.fixed_dictionaries(
    {},
    optional={"model": models, **{field: json_values for field in FIELDS if field != "model"}},
) | st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)

# Bodies shaped like real requests, with arbitrary values where a client could put anything:
# they pass the gateway's own checks and reach each provider's translation.
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
messages = st.fixed_dictionaries(
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
tools = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["function", "x"]),
        "function": st.fixed_dictionaries(
            {"name": st.text(max_size=8)}, optional={"parameters": json_values}
        ),
    }
)
plausible_bodies = st.fixed_dictionaries(
    {"model": models, "messages": st.lists(messages, max_size=4)},
    optional={
        "input": st.text(max_size=10) | st.lists(messages | content_parts, max_size=3),
        "prompt": json_values,
        "tools": st.lists(tools, max_size=2) | json_values,
        "tool_choice": st.sampled_from(["auto", "none", "required"]) | json_values,
        "response_format": json_values,
        "stream": st.booleans(),
        "max_tokens": st.integers(-5, 10),
        "n": st.integers(-1, 3),
        "reasoning_effort": json_values,
        "stop": json_values,
        "instructions": json_values,
    },
)


@FUZZ
@given(
    path=st.sampled_from(JSON_ROUTES + UPLOAD_ROUTES + GET_ROUTES),
    body=st.binary(max_size=600),
    content_type=st.sampled_from(
        [
            "application/json",
            None,
            "text/plain",
            "multipart/form-data; boundary=x",
            "multipart/form-data",
            "application/json; charset=latin-1",
        ]
    ),
)
def test_arbitrary_bytes_to_every_route(
    gateway: tuple[_Gateway, _Problems], path: str, body: bytes, content_type: str | None
) -> None:
    running, problems = gateway
    method = "GET" if path in GET_ROUTES else "POST"
    status, answer = _post(running, method, path, body, content_type)
    _check(status, answer, problems, body)


@FUZZ
@given(path=st.sampled_from(JSON_ROUTES), body=plausible_bodies | request_bodies | json_values)
def test_arbitrary_json_to_every_json_route(
    gateway: tuple[_Gateway, _Problems], path: str, body: Any
) -> None:
    running, problems = gateway
    # The standard encoder, for integers past 64 bits (orjson refuses them; clients may not).
    status, answer = _post(running, "POST", path, json.dumps(body).encode(), "application/json")
    _check(status, answer, problems, body)


def _form(fields: list[tuple[str, bytes]], file: bytes | None, close: bool) -> bytes:
    out = b""
    for name, value in fields:
        out += b'--x\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
        out += value + b"\r\n"
    if file is not None:
        out += b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        out += file + b"\r\n"
    return out + (b"--x--\r\n" if close else b"")


@FUZZ
@given(
    path=st.sampled_from(UPLOAD_ROUTES),
    fields=st.lists(
        st.tuples(
            st.sampled_from(["model", "stream", "language", "response_format", "prompt", "x"]),
            st.sampled_from([b"mock/w", b"true", b"json", b"text", b"srt"])
            | st.binary(max_size=40),
        ),
        max_size=6,
    ),
    file=st.none() | st.binary(max_size=200),
    close=st.booleans(),
)
def test_arbitrary_forms_to_the_upload_routes(
    gateway: tuple[_Gateway, _Problems],
    path: str,
    fields: list[tuple[str, bytes]],
    file: bytes | None,
    close: bool,
) -> None:
    running, problems = gateway
    body = _form(fields, file, close)
    status, answer = _post(running, "POST", path, body, "multipart/form-data; boundary=x")
    _check(status, answer, problems, body)
