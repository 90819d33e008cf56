"""A stream waiting for its first event is committed and kept alive with SSE comments."""

from __future__ import annotations

import time

import aiohttp
import openai
import orjson

from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.streams import answering, openai_chat_stream, streaming
from wire.sse import Comment, Event, SSEDecoder

BODY = {"model": "fake/m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


async def _read(url: str) -> tuple[int, float, list[Event | Comment]]:
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/chat/completions", json=BODY) as response,
    ):
        headers_after = time.monotonic() - started
        return response.status, headers_after, SSEDecoder().feed(await response.read())


async def test_slow_upstream_headers_get_keepalive_comments_then_the_events(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(provider_toml(upstream.url, timeout=5, keepalive=0.2))
    upstream.handler = streaming(openai_chat_stream(["a", "b"]))
    slow = upstream.handler

    async def slow_headers(request):  # the upstream thinks for 0.7 s before answering
        import asyncio

        await asyncio.sleep(0.7)
        return await slow(request)

    upstream.handler = slow_headers
    status, headers_after, items = await _read(url)
    assert status == 200
    assert headers_after < 0.6  # committed by the first keepalive, before the upstream answered
    comments = [item for item in items if isinstance(item, Comment)]
    events = [item for item in items if isinstance(item, Event)]
    assert len(comments) >= 2
    assert items.index(comments[0]) < items.index(events[0])
    assert events[-1].data == "[DONE]"


async def test_silent_body_before_first_token_gets_keepalive_comments(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(provider_toml(upstream.url, timeout=5, keepalive=0.2))
    upstream.handler = streaming(openai_chat_stream(["a", "b"]), first_delay=0.7)
    sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    stream = await sdk.chat.completions.create(
        model="fake/m", messages=BODY["messages"], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    await sdk.close()
    assert text == "ab"  # the SDK skips the comments

    status, _, items = await _read(url)
    assert status == 200
    assert any(isinstance(item, Comment) for item in items)


async def test_failure_after_keepalive_commit_becomes_the_error_event(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(provider_toml(upstream.url, timeout=5, keepalive=0.2))
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
        delay=0.7,
    )
    status, _, items = await _read(url)
    assert status == 200  # already committed by the keepalive
    events = [item for item in items if isinstance(item, Event)]
    error = orjson.loads(events[-1].data)["error"]
    assert error["message"] == "Rate limit reached"
    assert error["code"] == "rate_limit_exceeded"


async def test_keepalive_does_not_defeat_the_timeout(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(provider_toml(upstream.url, timeout=0.5, keepalive=0.1))
    upstream.handler = streaming([], then="hang")
    status, _, items = await _read(url)
    assert status == 200
    events = [item for item in items if isinstance(item, Event)]
    assert orjson.loads(events[-1].data)["error"]["code"] == "upstream_timeout"


async def test_fast_stream_gets_no_keepalive_comment(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(provider_toml(upstream.url, timeout=5, keepalive=0.5))
    upstream.handler = streaming(openai_chat_stream(["a", "b"]))
    _, _, items = await _read(url)
    assert not any(isinstance(item, Comment) for item in items)
