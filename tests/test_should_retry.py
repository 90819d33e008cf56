"""`x-should-retry` on every error answer: "false" where no retry can change the answer (400,
401, 403, 404, 405, 413, 415, 421, 422, a provider key the gateway lacks), "true" where one
may (408, 429, 5xx). The OpenAI and Anthropic SDKs and Claude Code read it before their own
rule; without it Claude Code retries a wrong gateway key for minutes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.raw_requests import JSON, JSON_ROUTES
from tests.streams import answering

GEMINI = "/v1beta/models/mock%2Fm:generateContent"
ROUTES = [*JSON_ROUTES, "/v1/messages", "/v1/messages/count_tokens", GEMINI]
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def url(upstream: FakeUpstream, start_gateway: GatewayFactory) -> str:
    return await start_gateway(
        "[server]\nmax_request_bytes = 4096\n"
        + provider_toml(upstream.url, "up", api_key="k", timeout=2)
        + provider_toml(upstream.url, "claude", type="anthropic", api_key="k", timeout=2)
        + provider_toml(upstream.url, "keyless", api_key="env.GATEWAY_TEST_UNSET_VARIABLE")
        + provider_toml("http://127.0.0.1:9/v1", "down", api_key="k", timeout=2)
        + "[providers.mock]\ndelay = 0\n"
    )


async def _answer(
    url: str, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str | None]:
    async with (
        aiohttp.ClientSession(skip_auto_headers=("Content-Type",)) as session,
        session.request(method, url + path, data=body, headers=headers) as response,
    ):
        await response.read()
        return response.status, response.headers.get("x-should-retry")


@pytest.mark.parametrize("path", ROUTES)
async def test_a_malformed_body_says_do_not_retry_on_every_route(url: str, path: str) -> None:
    assert await _answer(url, "POST", path, b'{"model": ', JSON) == (400, "false")


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        ("GET", "/v1/nowhere", b"", {}, 404),
        ("GET", "/v1/chat/completions", b"", {}, 405),
        ("POST", "/v1/chat/completions", b"{}" + b" " * 5000, JSON, 413),
        ("POST", "/v1/messages", b"x" * 5000, JSON, 413),
        ("POST", "/v1/chat/completions", b"{}", {"Content-Type": "text/plain"}, 415),
        ("POST", "/v1/messages", b"{}", {"Content-Type": "text/plain"}, 415),
        ("POST", "/v1/chat/completions", b"{}", {**JSON, "Host": "evil.test"}, 421),
    ],
)
async def test_what_the_gateway_refuses_says_do_not_retry(
    url: str, method: str, path: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    assert await _answer(url, method, path, body, headers) == (status, "false")


def openai_body(model: str) -> bytes:
    return b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}]}' % model.encode()


def messages_body(model: str) -> bytes:
    return (
        b'{"model": "%s", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]}'
        % model.encode()
    )


@pytest.mark.parametrize(
    ("path", "make"), [("/v1/chat/completions", openai_body), ("/v1/messages", messages_body)]
)
@pytest.mark.parametrize(
    ("model", "upstream_status", "status", "retry"),
    [
        ("up/m", 400, 400, "false"),
        ("up/m", 404, 404, "false"),
        ("up/m", 422, 422, "false"),
        ("up/m", 429, 429, "true"),
        ("up/m", 500, 500, "true"),
        ("up/m", 503, 503, "true"),
        ("down/m", None, 502, "true"),  # unreachable
        ("keyless/m", None, 502, "false"),  # the gateway's own key is missing
        ("up/m", 401, 502, "false"),  # the upstream refused the gateway's key
        ("nowhere/m", None, 400, "false"),
    ],
)
async def test_upstream_failures_say_whether_a_retry_may_help(
    url: str,
    upstream: FakeUpstream,
    path: str,
    make: Callable[[str], bytes],
    model: str,
    upstream_status: int | None,
    status: int,
    retry: str,
) -> None:
    if upstream_status is not None:
        upstream.handler = answering({"error": {"message": "no"}}, status=upstream_status)
    if path == "/v1/messages" and status == 503:
        status = 529  # overloaded, as Anthropic says it
    assert await _answer(url, "POST", path, make(model), JSON) == (status, retry)


async def test_an_overloaded_anthropic_provider_says_retry(
    url: str, upstream: FakeUpstream
) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    upstream.handler = answering(body, status=529)
    assert await _answer(url, "POST", "/v1/messages", messages_body("claude/c"), JSON) == (
        529,
        "true",
    )


# --- gateway keys and limits --------------------------------------------------------------


@pytest.fixture
async def keyed_url(start_gateway: GatewayFactory) -> str:
    return await start_gateway(
        "[providers.mock]\ndelay = 0\n"
        '[keys.team]\nvalue = "right-key"\nmodels = ["mock/*"]\nrpm = 2\n'
    )


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "retry"),
    [
        ("/v1/chat/completions", {}, openai_body("mock/m"), 401, "false"),
        (
            "/v1/chat/completions",
            {"Authorization": "Bearer wrong"},
            openai_body("mock/m"),
            401,
            "false",
        ),
        ("/v1/messages", {"x-api-key": "wrong"}, messages_body("mock/m"), 401, "false"),
        (GEMINI, {"x-goog-api-key": "wrong"}, b'{"contents": []}', 401, "false"),
        ("/v1/messages", {"x-api-key": "right-key"}, messages_body("other/m"), 403, "false"),
    ],
)
async def test_a_refused_gateway_key_says_do_not_retry(
    keyed_url: str, path: str, headers: dict[str, str], body: bytes, status: int, retry: str
) -> None:
    assert await _answer(keyed_url, "POST", path, body, {**JSON, **headers}) == (status, retry)


async def test_a_gateway_rate_limit_says_retry(keyed_url: str) -> None:
    headers = {**JSON, "x-api-key": "right-key"}
    answers = [
        await _answer(keyed_url, "POST", "/v1/messages", messages_body("mock/m"), headers)
        for _ in range(3)
    ]
    assert answers == [(200, None), (200, None), (429, "true")]


# --- answers written outside aiohttp's handlers -------------------------------------------


async def _raw_exchange(url: str, head: bytes, pause: float = 0.0) -> dict[str, str]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        if pause:
            await asyncio.sleep(pause)
        async with asyncio.timeout(20):
            raw = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    lines = raw.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return {"status": lines[0].split()[1], **headers}


async def test_a_malformed_request_head_says_do_not_retry(mock_url: str) -> None:
    answer = await _raw_exchange(mock_url, b"GARBAGE\r\n\r\n")
    assert (answer["status"], answer["x-should-retry"]) == ("400", "false")


async def test_a_request_head_too_slow_says_retry(start_gateway: GatewayFactory) -> None:
    url = await start_gateway("[server]\nheader_timeout = 0.3\n[providers.mock]\n")
    answer = await _raw_exchange(url, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    assert (answer["status"], answer["x-should-retry"]) == ("408", "true")


async def test_a_connection_past_the_cap_says_retry(start_gateway: GatewayFactory) -> None:
    url = await start_gateway("[server]\nmax_connections = 1\n[providers.mock]\n")
    host, port = url.removeprefix("http://").rsplit(":", 1)
    _, held = await asyncio.open_connection(host, int(port))
    try:
        await asyncio.sleep(0.1)
        answer = await _raw_exchange(url, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        held.close()
    assert (answer["status"], answer["x-should-retry"]) == ("503", "true")


# --- the SDKs: they stop retrying -------------------------------------------------------


Sent = tuple[Any, list[str]]


@pytest.fixture
async def sent() -> AsyncIterator[Sent]:
    """The SDKs' own HTTP client, recording every request an SDK sends (its retries too)."""
    requests: list[str] = []

    async def record(request: Any) -> None:
        requests.append(request.url.path)

    http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [record]})
    yield http, requests
    await http.aclose()


async def test_the_openai_sdk_sends_a_wrong_key_or_a_missing_provider_key_once(
    url: str, keyed_url: str, sent: Sent
) -> None:
    http, requests = sent
    wrong = openai.AsyncOpenAI(base_url=f"{keyed_url}/v1", api_key="wrong", http_client=http)
    with pytest.raises(openai.AuthenticationError):
        await wrong.chat.completions.create(model="mock/m", messages=HI)  # type: ignore[arg-type]
    assert len(requests) == 1
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", http_client=http)
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="keyless/m", messages=HI)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    assert len(requests) == 2  # a 502 the SDK retries twice by default, but for the header


async def test_the_anthropic_sdk_sends_a_wrong_key_or_a_missing_provider_key_once(
    url: str, keyed_url: str, sent: Sent
) -> None:
    http, requests = sent
    wrong = anthropic.AsyncAnthropic(base_url=keyed_url, api_key="wrong", http_client=http)
    with pytest.raises(anthropic.AuthenticationError):
        await wrong.messages.create(model="mock/m", max_tokens=9, messages=HI)  # type: ignore[arg-type]
    assert len(requests) == 1
    client = anthropic.AsyncAnthropic(base_url=url, api_key="x", http_client=http)
    with pytest.raises(anthropic.InternalServerError) as caught:
        await client.messages.create(model="keyless/m", max_tokens=9, messages=HI)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    assert len(requests) == 2


async def test_the_sdks_still_retry_an_overloaded_upstream(
    url: str, upstream: FakeUpstream, sent: Sent
) -> None:
    http, requests = sent
    upstream.handler = answering({"error": {"message": "busy"}}, status=503)
    client = anthropic.AsyncAnthropic(base_url=url, api_key="x", http_client=http, max_retries=1)
    with pytest.raises(anthropic.InternalServerError):
        await client.messages.create(model="up/m", max_tokens=9, messages=HI)  # type: ignore[arg-type]
    assert len(requests) == 2
