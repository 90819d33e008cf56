"""What the gateway takes from an upstream: no redirect followed, no body held past its limit,
and errors that name the provider without its address, its key or Python's internals."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.streams import (
    chat_chunk,
    chat_completion,
    data,
    openai_chat_stream,
    parse_sse,
    streaming,
)

MESSAGES = [{"role": "user", "content": "hi"}]
SECRET = "sk-configured-secret-0123456789"


def _error(raw: bytes) -> dict[str, Any]:
    body = orjson.loads(raw)
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


async def _post(url: str, body: dict[str, Any], path: str = "/v1/chat/completions"):
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + path, json=body) as response,
    ):
        return response.status, await response.read()


@pytest.fixture
async def elsewhere() -> AsyncIterator[FakeUpstream]:
    """Another server, where a redirect points: it must never hear from the gateway."""
    server = FakeUpstream()
    await server.start()
    server.handler = _ok
    yield server
    await server.stop()


async def _ok(request: web.Request) -> web.Response:
    return web.json_response(chat_completion("from elsewhere"))


def _redirecting(status: int, location: str):
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, headers={"Location": location})

    return handler


def _redirect_toml(kind: str, base_url: str) -> str:
    lines = [f"[providers.{kind}]", f'type = "{kind}"', f'base_url = "{base_url}"']
    lines.append(f'api_key = "{SECRET}"')
    lines.append('headers = { "X-Extra-Secret" = "configured-header-value" }')
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("kind", ["azure", "anthropic", "openai"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_redirect_is_not_followed_and_is_a_502_naming_the_provider(
    upstream: FakeUpstream,
    elsewhere: FakeUpstream,
    start_gateway: GatewayFactory,
    kind: str,
    status: int,
    stream: bool,
) -> None:
    base = upstream.url.removesuffix("/v1") if kind == "azure" else upstream.url
    url = await start_gateway(_redirect_toml(kind, base))
    location = f"{elsewhere.url}/steal"
    upstream.handler = _redirecting(status, location)
    status_seen, raw = await _post(
        url, {"model": f"{kind}/m", "messages": MESSAGES, "stream": stream}
    )
    assert status_seen == 502
    error = _error(raw)
    assert error["code"] == "upstream_redirect"
    assert f"'{kind}'" in error["message"] and str(status) in error["message"]
    assert elsewhere.url.split("//")[1].split("/")[0] not in error["message"]  # no Location
    # The upstream got the request with its key (api-key, x-api-key or Authorization) ...
    sent = upstream.requests[-1]["headers"]
    assert SECRET in " ".join(sent.values()) and sent["X-Extra-Secret"]
    # ... and the other server nothing: no key, no header, no re-posted body.
    assert elsewhere.requests == []


async def test_a_307_does_not_repost_the_body_elsewhere_through_the_sdk(
    upstream: FakeUpstream, elsewhere: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(_redirect_toml("azure", upstream.url.removesuffix("/v1")))
    upstream.handler = _redirecting(307, f"{elsewhere.url}/x")
    sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(model="azure/d", messages=MESSAGES)
    await sdk.close()
    assert caught.value.status_code == 502
    assert upstream.last_body["messages"] == MESSAGES  # it went to the configured upstream
    assert elsewhere.requests == []


# --- bodies held whole are bounded ---


def _big_answer(size: int, *, status: int = 200, chunked: bool = True):
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        if not chunked:
            response.content_length = size
        await response.prepare(request)
        piece = b" " * 65536
        sent = 0
        try:
            while sent < size:
                await response.write(piece[: size - sent])
                sent += len(piece)
        except ConnectionError:
            pass  # the gateway stopped reading: what this test is about
        return response

    return handler


@pytest.mark.parametrize("chunked", [True, False])
async def test_a_non_streamed_answer_over_max_upstream_bytes_is_a_502(
    upstream: FakeUpstream, start_gateway: GatewayFactory, chunked: bool
) -> None:
    url = await start_gateway(
        "[server]\nmax_upstream_bytes = 100000\n" + provider_toml(upstream.url)
    )
    upstream.handler = _big_answer(1_000_000, chunked=chunked)
    status, raw = await _post(url, {"model": "fake/m", "messages": MESSAGES})
    assert status == 502
    error = _error(raw)
    assert error["code"] == "upstream_too_large"
    assert "'fake'" in error["message"] and "100000" in error["message"]


async def test_an_error_body_over_the_limit_on_a_streamed_request_is_a_502(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(
        "[server]\nmax_upstream_bytes = 100000\n" + provider_toml(upstream.url)
    )
    upstream.handler = _big_answer(1_000_000, status=500)
    status, raw = await _post(url, {"model": "fake/m", "messages": MESSAGES, "stream": True})
    assert status == 502
    assert _error(raw)["code"] == "upstream_too_large"


async def test_an_answer_under_the_limit_passes_whole(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(
        "[server]\nmax_upstream_bytes = 100000\n" + provider_toml(upstream.url)
    )
    answer = chat_completion("x" * 90_000)

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(answer)

    upstream.handler = handler
    status, raw = await _post(url, {"model": "fake/m", "messages": MESSAGES})
    assert status == 200 and orjson.loads(raw) == answer


async def test_a_gzip_answer_is_limited_by_its_inflated_size(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(
        "[server]\nmax_upstream_bytes = 100000\n" + provider_toml(upstream.url)
    )
    small = orjson.dumps(chat_completion("y" * 1000))
    bomb = gzip.compress(b" " * 10_000_000)  # 10 KB that inflate to 10 MB

    def gzipped(body: bytes):
        async def handler(request: web.Request) -> web.Response:
            return web.Response(
                body=gzip.compress(body) if body is small else body,
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )

        return handler

    upstream.handler = gzipped(small)
    status, raw = await _post(url, {"model": "fake/m", "messages": MESSAGES})
    assert status == 200 and raw == small  # inflated for the client
    upstream.handler = gzipped(bomb)
    status, raw = await _post(url, {"model": "fake/m", "messages": MESSAGES})
    assert status == 502 and _error(raw)["code"] == "upstream_too_large"


async def test_a_streamed_answer_has_no_size_limit(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(
        "[server]\nmax_upstream_bytes = 100000\n" + provider_toml(upstream.url)
    )
    tokens = ["z" * 10_000] * 50  # 500 KB through a 100 KB limit: streams are never held

    upstream.handler = streaming(openai_chat_stream(tokens))
    sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    stream = await sdk.chat.completions.create(model="fake/m", messages=MESSAGES, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    await sdk.close()
    assert text == "".join(tokens)


# --- errors in the user's words: the provider's name, never its address or a repr ---


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _no_internals(message: str, port: int | None = None) -> None:
    assert "127.0.0.1" not in message and "ConnectionKey" not in message
    assert "<" not in message and "Error(" not in message and "aiohttp" not in message
    if port is not None:
        assert str(port) not in message


@pytest.mark.parametrize("stream", [False, True])
async def test_an_unreachable_upstream_is_named_not_addressed(
    start_gateway: GatewayFactory, stream: bool
) -> None:
    port = _closed_port()
    url = await start_gateway(provider_toml(f"http://127.0.0.1:{port}/v1"))
    status, raw = await _post(url, {"model": "fake/m", "messages": MESSAGES, "stream": stream})
    assert status == 502
    error = _error(raw)
    assert error["message"] == "Cannot connect to provider 'fake': connection refused."
    _no_internals(error["message"], port)


async def test_an_upstream_that_hangs_up_before_answering_is_said_plainly(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    async def hang_up(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(3600)
        raise AssertionError

    upstream.handler = hang_up
    status, raw = await _post(gateway_url, {"model": "fake/m", "messages": MESSAGES})
    assert status == 502
    error = _error(raw)
    assert error["message"] == "Provider 'fake' closed the connection before answering."


async def _garbage_server(reply: bytes) -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    "reply",
    [
        b"HELLO THERE\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nBad Header\r\n\r\n{}",
    ],
)
async def test_an_upstream_that_does_not_speak_http_is_a_protocol_error(
    start_gateway: GatewayFactory, reply: bytes
) -> None:
    server, port = await _garbage_server(reply)
    url = await start_gateway(provider_toml(f"http://127.0.0.1:{port}/v1"))
    status, raw = await _post(url, {"model": "fake/m", "messages": MESSAGES})
    server.close()
    assert status == 502
    error = _error(raw)
    assert error["message"] == "Provider 'fake' sent a response that is not valid HTTP."
    _no_internals(error["message"], port)


async def test_an_answer_cut_short_says_so_in_plain_words(start_gateway: GatewayFactory) -> None:
    server, port = await _garbage_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    url = await start_gateway(provider_toml(f"http://127.0.0.1:{port}/v1"))
    status, raw = await _post(url, {"model": "fake/m", "messages": MESSAGES})
    server.close()
    assert status == 502
    error = _error(raw)
    assert error["message"] == (
        "Provider 'fake' closed the connection before the answer was complete."
    )
    assert "TransferEncodingError" not in error["message"] and "400" not in error["message"]


# --- secrets never come back ---


def _echoing_key(status: int = 401):
    async def handler(request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        key = key or request.headers.get("api-key") or request.headers.get("x-api-key", "")
        message = f"Incorrect API key provided: {key}. Also: sk-proj-another0123456789."
        return web.json_response(
            {"error": {"message": message, "type": "invalid_request_error", "code": "bad_key"}},
            status=status,
        )

    return handler


@pytest.mark.parametrize("kind", ["openai", "azure", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_keys_echoed_by_the_upstream_are_redacted(
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    stream: bool,
) -> None:
    key = "plain-looking-key-without-prefix-42"  # only known because it is configured
    monkeypatch.setenv("GATEWAY_TEST_ECHOED_KEY", key)
    base = upstream.url.removesuffix("/v1") if kind == "azure" else upstream.url
    url = await start_gateway(
        f'[providers.p]\ntype = "{kind}"\nbase_url = "{base}"\n'
        'api_key = "env.GATEWAY_TEST_ECHOED_KEY"\n'
    )
    upstream.handler = _echoing_key()
    status, raw = await _post(url, {"model": "p/m", "messages": MESSAGES, "stream": stream})
    assert status == 502  # the gateway's own key refused: not the client's fault
    message = _error(raw)["message"]
    assert key not in raw.decode() and "another0123456789" not in raw.decode()
    assert "Incorrect API key provided: [redacted]" in message


async def test_a_key_echoed_in_a_mid_stream_error_event_is_redacted(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(provider_toml(upstream.url, api_key=SECRET))
    failure = {"error": {"message": f"key {SECRET} was revoked", "type": "server_error"}}

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(data(chat_chunk({"content": "a"})) + data(failure))
        return response

    upstream.handler = handler
    status, raw = await _post(url, {"model": "fake/m", "messages": MESSAGES, "stream": True})
    events = parse_sse(raw)
    assert status == 200 and SECRET not in raw.decode()
    assert orjson.loads(events[-1].data)["error"]["message"] == "key [redacted] was revoked"


# --- JSON too deep to read, from the upstream ---

DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize("field", ["usage", "choices", "extra"])
async def test_a_stream_chunk_nested_5000_deep_ends_the_stream_with_an_error_event(
    upstream: FakeUpstream, gateway_url: str, caplog: pytest.LogCaptureFixture, field: str
) -> None:
    deep = b'data: {"id":"x","object":"chat.completion.chunk","' + field.encode() + b'":'
    first = data(chat_chunk({"role": "assistant", "content": "a"}))

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(first)
        await asyncio.sleep(0.05)
        await response.write(deep + DEEP + b"}\n\n")
        return response

    upstream.handler = handler
    caplog.set_level(logging.INFO)
    status, raw = await _post(
        gateway_url, {"model": "fake/m", "messages": MESSAGES, "stream": True}
    )
    events = parse_sse(raw)
    assert status == 200
    assert orjson.loads(events[0].data)["choices"][0]["delta"]["content"] == "a"
    last = orjson.loads(events[-1].data)
    assert last["error"]["code"] == "upstream_protocol_error", last
    assert "'fake'" in last["error"]["message"]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini", "cohere", "ollama"])
@pytest.mark.parametrize("stream", [False, True])
async def test_an_answer_nested_5000_deep_is_a_502_from_every_provider(
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    stream: bool,
) -> None:
    base = upstream.url.removesuffix("/v1") if kind == "ollama" else upstream.url
    url = await start_gateway(
        f'[providers.p]\ntype = "{kind}"\nbase_url = "{base}"\napi_key = "k"\n'
    )
    answer = b'{"x":' + DEEP + b"}"
    if stream:
        kind_type = "application/x-ndjson" if kind == "ollama" else "text/event-stream"
        answer = answer + b"\n" if kind == "ollama" else b"data: " + answer + b"\n\n"
    else:
        kind_type = "application/json"

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=answer, content_type=kind_type)

    upstream.handler = handler
    status, raw = await _post(url, {"model": "p/m", "messages": MESSAGES, "stream": stream})
    if status == 200:  # a stream may have started with the error event: it is all there is
        assert stream
        (event,) = parse_sse(raw)
        raw = event.data.encode()
    else:
        assert status == 502
    error = _error(raw)
    assert error["code"] == "upstream_protocol_error" and "'p'" in error["message"]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
