"""The two upstream clients answer alike: the lean one (gateway.engine.transport.http1, the
default) and aiohttp's (`[server] upstream_client = "aiohttp"`) give the client the same answer,
and the same error in the same words, for every way an upstream can fail. And the line between
them: a proxy from the environment sends a request through aiohttp's client, loopback never."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from aiohttp.helpers import proxies_from_env

from gateway.engine.transport.http1.route import route
from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.streams import chat_completion, openai_chat_stream, streaming

CLIENTS = ("lean", "aiohttp")
MESSAGES = [{"role": "user", "content": "hi"}]


async def _post(url: str, body: dict[str, Any]) -> tuple[int, bytes, str | None]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/chat/completions", json=body) as response,
    ):
        return response.status, await response.read(), response.headers.get("x-request-id")


def _toml(client: str, upstream_url: str, **settings: Any) -> str:
    server = f'[server]\nupstream_client = "{client}"\nmax_upstream_bytes = 100000\n'
    return server + provider_toml(upstream_url, timeout=1, **settings)


async def _raw_server(reply: bytes | None) -> tuple[asyncio.Server, str]:
    """Answers every request with `reply` and closes (None: closes without a word)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if reply is not None:
            writer.write(reply)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def _handler(answer: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    return answer


async def _silent(request: web.Request) -> web.Response:
    await asyncio.sleep(30)
    raise AssertionError


async def _bad_gzip(request: web.Request) -> web.Response:
    return web.Response(
        body=b"not gzip", headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )


async def _gzipped(request: web.Request) -> web.Response:
    body = gzip.compress(orjson.dumps(chat_completion("packed")))
    return web.Response(
        body=body,
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "x-request-id": "req-z",
        },
    )


async def _too_large(request: web.Request) -> web.Response:
    return web.json_response(chat_completion("x" * 200_000))


async def _redirect(request: web.Request) -> web.Response:
    return web.Response(status=307, headers={"Location": "http://127.0.0.1:9/elsewhere"})


async def _error_answer(request: web.Request) -> web.Response:
    return web.json_response(
        {"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate"}},
        status=429,
        headers={"Retry-After": "0", "x-request-id": "req-429"},
    )


# name -> (how the upstream behaves, the status and error message the client gets)
SCENARIOS: dict[str, tuple[Any, int, str | None]] = {
    "refused": ("closed-port", 502, "Cannot connect to provider 'fake': connection refused."),
    "hung-up": (None, 502, "Provider 'fake' closed the connection before answering."),
    "not-http": (
        b"HELLO THERE\r\n\r\n",
        502,
        "Provider 'fake' sent a response that is not valid HTTP.",
    ),
    "cut-short": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        502,
        "Provider 'fake' closed the connection before the answer was complete.",
    ),
    "silent": (_silent, 504, "Provider 'fake' sent nothing for 1 seconds (its timeout)."),
    "bad-gzip": (
        _bad_gzip,
        502,
        "Provider 'fake' sent a compressed answer that could not be inflated.",
    ),
    "too-large": (
        _too_large,
        502,
        "Provider 'fake' sent an answer larger than the gateway's limit of 100000 bytes "
        "([server] max_upstream_bytes).",
    ),
    "redirect": (
        _redirect,
        502,
        "Provider 'fake' answered with a redirect (HTTP 307). The gateway does not follow "
        "redirects, so that the provider's key goes nowhere else: check its base_url.",
    ),
    "refusal": (_error_answer, 429, None),
    "gzip": (_gzipped, 200, None),
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_both_clients_give_the_same_answer(
    upstream: FakeUpstream, start_gateway: GatewayFactory, scenario: str, stream: bool
) -> None:
    behaviour, status, message = SCENARIOS[scenario]
    if stream and scenario in ("gzip", "too-large"):
        # A JSON answer to a streamed request is no event stream (streams have no size limit)
        status, message = 502, "The upstream closed the stream in the middle of an event."
    seen = []
    for client in CLIENTS:
        server = None
        if behaviour == "closed-port":
            url = _closed_port_url()
        elif behaviour is None or isinstance(behaviour, bytes):
            server, url = await _raw_server(behaviour)
        else:
            upstream.handler = behaviour
            url = upstream.url
        gateway = await start_gateway(_toml(client, url))
        got_status, raw, request_id = await _post(
            gateway, {"model": "fake/m", "messages": MESSAGES, "stream": stream}
        )
        if server is not None:
            server.close()
        seen.append((got_status, raw, request_id))
        assert got_status == status, (client, raw)
        if message is not None:
            assert orjson.loads(raw)["error"]["message"] == message, client
    assert seen[0] == seen[1]


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_stream_passes_through_each_client_token_by_token(
    upstream: FakeUpstream, start_gateway: GatewayFactory, client: str
) -> None:
    tokens = [f"t{i} " for i in range(50)]

    upstream.handler = streaming(openai_chat_stream(tokens))
    url = await start_gateway(_toml(client, upstream.url))
    sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    for _ in range(3):  # the upstream connection is reused between them
        stream = await sdk.chat.completions.create(model="fake/m", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "".join(tokens)
    await sdk.close()
    assert len({r["peer"] for r in upstream.requests}) == 1


# --- proxies from the environment ---


@pytest.fixture
async def proxy() -> AsyncIterator[FakeUpstream]:
    """A forward proxy as a client sees one: it gets the absolute URL and answers."""
    server = FakeUpstream()
    await server.start()
    server.handler = _proxied
    yield server
    await server.stop()


async def _proxied(request: web.Request) -> web.Response:
    return web.json_response(chat_completion(f"via proxy to {request.host}"))


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_proxy_from_the_environment_carries_requests_to_remote_hosts(
    proxy: FakeUpstream,
    start_gateway: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
    client: str,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/v1"))
    url = await start_gateway(_toml(client, "http://upstream.invalid/v1"))
    status, raw, _ = await _post(url, {"model": "fake/m", "messages": MESSAGES})
    assert status == 200, raw
    assert orjson.loads(raw)["choices"][0]["message"]["content"] == "via proxy to upstream.invalid"
    assert proxy.requests[-1]["headers"]["Host"] == "upstream.invalid"


async def test_loopback_upstreams_are_never_proxied(
    upstream: FakeUpstream,
    proxy: FakeUpstream,
    start_gateway: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/v1"))
    upstream.handler = _gzipped
    url = await start_gateway(_toml("lean", upstream.url))
    status, _, _ = await _post(url, {"model": "fake/m", "messages": MESSAGES})
    assert status == 200 and len(upstream.requests) == 1 and proxy.requests == []


def test_no_proxy_names_the_hosts_reached_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    proxies = proxies_from_env()
    proxied = route("https://api.example.com/v1/chat/completions", proxies)
    assert not proxied.lean and proxied.proxy is not None
    assert route("https://internal.example/v1", proxies).lean
    assert route("https://localhost:8000/v1", proxies).lean
