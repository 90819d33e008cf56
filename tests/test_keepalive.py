"""A stream waiting for its first event is committed and kept alive with SSE comments."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import orjson
from aiohttp import web

from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.streams import answering, openai_chat_stream, streaming
from wire.sse import Comment, Event, SSEDecoder

BODY = {"model": "fake/m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


async def _read(url: str) -> tuple[int, list[Event | Comment]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/chat/completions", json=BODY) as response,
    ):
        return response.status, SSEDecoder().feed(await response.read())


async def test_slow_upstream_headers_get_keepalive_comments_then_the_events(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(provider_toml(upstream.url, timeout=30, keepalive=0.2))
    answer = streaming(openai_chat_stream(["a", "b"]))
    answered = asyncio.Event()  # the upstream answers only once the client has the headers

    async def slow_headers(request: web.Request) -> web.StreamResponse:
        await asyncio.wait_for(answered.wait(), 20)
        return await answer(request)

    upstream.handler = slow_headers
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/chat/completions", json=BODY) as response,
    ):
        # The headers are here while the upstream has not answered: the keepalive sent them.
        assert response.status == 200
        first = await response.content.readuntil(b"\n\n")
        answered.set()
        items = SSEDecoder().feed(first + await response.read())
    assert items[0] == Comment("keepalive")
    events = [item for item in items if isinstance(item, Event)]
    assert events[-1].data == "[DONE]"


async def test_silent_body_before_first_token_gets_keepalive_comments(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    # Wide windows (a keepalive every 0.1 s, 2 s of silence): a loaded machine still fits one.
    url = await start_gateway(provider_toml(upstream.url, timeout=30, keepalive=0.1))
    upstream.handler = streaming(openai_chat_stream(["a", "b"]), first_delay=2)
    sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    stream = await sdk.chat.completions.create(
        model="fake/m", messages=BODY["messages"], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    await sdk.close()
    assert text == "ab"  # the SDK skips the comments

    status, items = await _read(url)
    assert status == 200
    assert any(isinstance(item, Comment) for item in items)


async def test_failure_after_keepalive_commit_becomes_the_error_event(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(provider_toml(upstream.url, timeout=30, keepalive=0.1))
    upstream.handler = answering(
        {
            "error": {
                "message": "Rate limit reached",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        },
        status=429,
        delay=2,
    )
    status, items = await _read(url)
    assert status == 200  # already committed by the keepalive
    events = [item for item in items if isinstance(item, Event)]
    error = orjson.loads(events[-1].data)["error"]
    assert error["message"] == "Rate limit reached"
    assert error["code"] == "rate_limit_exceeded"


async def test_keepalive_does_not_defeat_the_timeout(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(provider_toml(upstream.url, timeout=2, keepalive=0.1))
    upstream.handler = streaming([], then="hang")
    status, items = await _read(url)
    assert status == 200
    events = [item for item in items if isinstance(item, Event)]
    assert orjson.loads(events[-1].data)["error"]["code"] == "upstream_timeout"


async def test_fast_stream_gets_no_keepalive_comment(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(provider_toml(upstream.url, timeout=30, keepalive=10))
    upstream.handler = streaming(openai_chat_stream(["a", "b"]))
    _, items = await _read(url)
    assert not any(isinstance(item, Comment) for item in items)
