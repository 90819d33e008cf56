"""A client that goes away cancels its upstream request at once, in every phase, quietly."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from tests.conftest import FakeUpstream
from tests.streams import answering, chat_chunk, data, streaming

BODY = {"model": "fake/m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(autouse=True)
def no_error_logged(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


async def _assert_upstream_closed(upstream: FakeUpstream) -> None:
    # "At once": well under the provider timeout (2 s), and no more tokens asked for.
    await asyncio.wait_for(upstream.closed_by_peer.wait(), timeout=1.0)


async def test_client_disconnect_mid_stream_cancels_upstream(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    tokens = [data(chat_chunk({"content": f"t{i}"})) for i in range(200)]
    upstream.handler = streaming(tokens, delay=0.05)
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{gateway_url}/v1/chat/completions", json={**BODY, "stream": True}
        )
        first = await response.content.readline()
        assert first.startswith(b"data: ")
        response.close()  # the client goes away mid-stream
    await _assert_upstream_closed(upstream)


@pytest.mark.parametrize("phase", ["before_headers", "before_first_token"])
async def test_client_disconnect_while_waiting_cancels_upstream(
    upstream: FakeUpstream, gateway_url: str, phase: str
) -> None:
    if phase == "before_headers":
        upstream.handler = answering({"choices": []}, delay=30)
    else:
        upstream.handler = streaming([], then="hang")
    async with aiohttp.ClientSession() as session:
        request = session.post(f"{gateway_url}/v1/chat/completions", json={**BODY, "stream": True})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(request, timeout=0.3)
    await _assert_upstream_closed(upstream)


async def test_client_disconnect_on_non_streamed_request_cancels_upstream(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    upstream.handler = answering({"choices": []}, delay=30)
    async with aiohttp.ClientSession() as session:
        request = session.post(f"{gateway_url}/v1/chat/completions", json=BODY)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(request, timeout=0.3)
    await _assert_upstream_closed(upstream)


async def test_gateway_keeps_serving_after_disconnects(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    upstream.handler = answering({"choices": []}, delay=30)
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(
                    session.post(f"{gateway_url}/v1/chat/completions", json=BODY), timeout=0.1
                )
        upstream.handler = answering({"choices": [], "ok": True})
        async with session.post(f"{gateway_url}/v1/chat/completions", json=BODY) as response:
            assert response.status == 200
            assert (await response.json())["ok"] is True
