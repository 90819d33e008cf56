"""The one owner of a client's stream (gateway.engine.stream): it ends a failed stream in the
client's own format, tells the upstream's silence from the client's leaving, and records the
tokens the stream used however it ended."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway import app as gateway_app
from gateway.config import parse
from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.streams import openai_chat_stream, streaming
from wire.sse import Comment, Event, SSEDecoder

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def silent_redis() -> AsyncIterator[str]:
    """A Redis that takes connections and never answers: every shared-state question waits
    out its `[state] timeout` (then the gateway serves without it)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/messages", {"model": "smart", "max_tokens": 10, "messages": MESSAGES}),
        ("/v1/responses", {"model": "smart", "input": "hi"}),
    ],
)
async def test_a_stream_keepalives_committed_before_any_attempt_ends_in_its_own_format(
    path: str, body: dict[str, object], silent_redis: str, start_gateway: GatewayFactory
) -> None:
    """The cooldown store is slow to answer, so keepalives commit the stream before the first
    attempt; then every attempt fails before making a translator (no provider key). The final
    error event is the client's format's: Anthropic's or the Responses API's, not chat's."""
    unset = "GATEWAY_TEST_NEVER_SET_KEY"
    assert unset not in os.environ
    providers = "".join(
        provider_toml("http://127.0.0.1:9", name, api_key=f"env.{unset}", keepalive=0.05)
        for name in ("a", "b")
    )
    url = await start_gateway(
        providers
        + '[models.smart]\ntargets = ["a/m", "b/m"]\n'
        + f'[state]\nredis_url = "{silent_redis}"\ntimeout = 0.5\n'
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}{path}", json={**body, "stream": True}) as response,
    ):
        assert response.status == 200  # committed by the keepalives
        items = SSEDecoder().feed(await response.read())
    assert any(isinstance(item, Comment) or item.event == "ping" for item in items)
    last = [item for item in items if isinstance(item, Event)][-1]
    assert last.event == "error"
    error = orjson.loads(last.data)
    assert error["type"] == "error"  # Anthropic's and the Responses API's error events
    if path == "/v1/messages":
        assert error["error"]["type"] == "api_error"
        assert "refused the gateway's key" in error["error"]["message"] or unset in str(error)
    else:
        assert error["sequence_number"] == 0 and error["code"] == "all_attempts_failed"


async def test_the_time_the_stream_takes_to_commit_is_not_the_upstreams_silence(
    upstream: FakeUpstream,
) -> None:
    """The first content is in; committing the stream (its head goes out) takes longer than
    the provider's timeout, as on a machine too busy to run the loop (a hook on the head that
    blocks it). The upstream was not silent: the stream is served in full, where it used to
    end in an upstream_timeout event (and a deadline firing in that window was taken for the
    client leaving)."""
    config = parse(provider_toml(upstream.url, timeout=0.3, keepalive=0), "test.toml")
    app = gateway_app.create_app(config, "127.0.0.1")
    slowed: list[str] = []

    async def slow_head(request: web.Request, response: web.StreamResponse) -> None:
        if request.path == "/v1/chat/completions" and not slowed:
            slowed.append(request.path)
            time.sleep(0.6)  # noqa: ASYNC251 - the busy machine: the loop runs nothing else

    app.on_response_prepare.insert(0, slow_head)
    upstream.handler = streaming(openai_chat_stream(["a", "b"]), delay=0.1)
    runner, url = await gateway_app.serve_app(app, config, "127.0.0.1", 0)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{url}/v1/chat/completions",
                json={"model": "fake/m", "messages": MESSAGES, "stream": True},
            ) as response,
        ):
            assert response.status == 200
            items = SSEDecoder().feed(await response.read())
    finally:
        await runner.cleanup()
    assert slowed
    events = [item for item in items if isinstance(item, Event)]
    assert events[-1].data == "[DONE]", events[-2:]
    text = "".join(
        choice["delta"].get("content") or ""
        for event in events[:-1]
        for choice in orjson.loads(event.data)["choices"]
    )
    assert text == "ab"


async def test_a_stream_the_client_cut_is_charged_the_tokens_it_reported(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    """An Anthropic stream passed through: message_start reports the input tokens; the client
    leaves after the first text. The key is charged those tokens (it was charged none)."""
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 25, "output_tokens": 1},
        },
    }
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}
    events = [
        f"event: {event['type']}\ndata: {orjson.dumps(event).decode()}\n\n".encode()
        for event in (start, block, {**delta, "delta": {"type": "text_delta", "text": "hi"}})
    ]
    upstream.handler = streaming(events, then="hang")
    url = await start_gateway(
        f'[providers.claude]\ntype = "anthropic"\nbase_url = "{upstream.url}"\napi_key = "k"\n'
        '[keys.team]\nvalue = "sk-team"\nbudget = 100000\n[admin]\nkey = "sk-admin"\n'
    )
    body = {"model": "claude/claude-x", "max_tokens": 10, "messages": MESSAGES, "stream": True}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/v1/messages", json=body, headers={"x-api-key": "sk-team"}
        ) as response:
            assert response.status == 200
            await response.content.readuntil(b'"hi"')  # the first text: then the client leaves
        for _ in range(200):  # settled once the gateway has seen the client go
            async with session.get(
                f"{url}/v1/keys/usage", headers={"Authorization": "Bearer sk-admin"}
            ) as usage:
                key = (await usage.json())["data"][0]
            if key["in_flight"] == 0:
                break
            await asyncio.sleep(0.02)
    assert key["in_flight"] == 0 and key["budget_spent"] == 25 + 1
