"""Every response names its request in x-gateway-request-id: the client's sane x-request-id,
else a new one; the upstream's own id still comes back as x-request-id."""

from __future__ import annotations

import re

import aiohttp
import openai
import pytest
from aiohttp import web

from gateway.server.request_ids import pick_request_id
from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.streams import answering, chat_completion, openai_chat_stream, streaming

MESSAGES = [{"role": "user", "content": "hi"}]
NEW_ID = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize(
    "sent",
    ["req-123", "0f8fad5b-d9cb-469f-a165-70867728950e", "trace:abc/1+2=3@x", "a" * 128],
)
def test_a_sane_client_id_is_kept(sent: str) -> None:
    assert pick_request_id(sent) == sent


@pytest.mark.parametrize(
    "sent",
    [None, "", "a" * 129, "has space", 'quote"d', "-starts-with-dash", "naïve", "line\nbreak"],
)
def test_anything_else_gets_a_new_id(sent: str | None) -> None:
    assert NEW_ID.fullmatch(pick_request_id(sent))


async def test_streamed_whole_and_error_answers_all_carry_the_id(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    upstream.handler = streaming(openai_chat_stream(["hi"]))
    headers = {"x-request-id": "client-req-1"}
    async with openai.AsyncOpenAI(
        base_url=f"{gateway_url}/v1", api_key="x", max_retries=0, default_headers=headers
    ) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="fake/m", messages=MESSAGES, stream=True
        )
        assert [c async for c in raw.parse()]
        assert raw.headers["x-gateway-request-id"] == "client-req-1"

        upstream.handler = answering(chat_completion("whole"))
        raw_whole = await client.chat.completions.with_raw_response.create(
            model="fake/m", messages=MESSAGES
        )
        assert raw_whole.headers["x-gateway-request-id"] == "client-req-1"

        upstream.handler = answering({"error": {"message": "no", "type": "server_error"}}, 503)
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="fake/m", messages=MESSAGES)
        assert caught.value.response.headers["x-gateway-request-id"] == "client-req-1"


async def test_the_upstreams_own_id_is_still_relayed_as_x_request_id(
    upstream: FakeUpstream, gateway_url: str
) -> None:
    async def with_id(request: web.Request) -> web.Response:
        response = await answering(chat_completion("whole"))(request)
        response.headers["x-request-id"] = "req_upstream_42"
        return response

    upstream.handler = with_id
    async with openai.AsyncOpenAI(
        base_url=f"{gateway_url}/v1", api_key="x", max_retries=0
    ) as client:
        answer = await client.chat.completions.create(model="fake/m", messages=MESSAGES)
    assert answer._request_id == "req_upstream_42"  # what the SDK shows its user


async def test_404_401_and_400_answers_carry_a_new_id_each(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(
        provider_toml(upstream.url, api_key="sk", timeout=2) + '[keys.team]\nvalue = "sk-team"\n'
    )
    seen = []
    async with aiohttp.ClientSession() as session:
        for method, path, headers, status in (
            ("GET", "/nowhere", {"Authorization": "Bearer sk-team"}, 404),
            ("POST", "/v1/chat/completions", {}, 401),
            ("POST", "/v1/chat/completions", {"Authorization": "Bearer sk-team"}, 400),
            ("GET", "/health", {"x-request-id": "bad id with spaces"}, 200),
        ):
            headers = {**headers, "Content-Type": "application/json"}
            async with session.request(method, f"{url}{path}", headers=headers, data=b"{") as r:
                assert r.status == status, path
                seen.append(r.headers["x-gateway-request-id"])
    assert all(NEW_ID.fullmatch(found) for found in seen)
    assert len(set(seen)) == len(seen)


async def test_a_stream_committed_by_a_keepalive_comment_carries_the_id(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    """The keepalive sends the headers before any attempt answered: the id is there too."""
    url = await start_gateway(provider_toml(upstream.url, api_key="sk", timeout=2, keepalive=0.1))
    upstream.handler = streaming(openai_chat_stream(["late"]), first_delay=0.4)
    body = {"model": "fake/m", "messages": MESSAGES, "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/v1/chat/completions", json=body, headers={"x-request-id": "kept-1"}
        ) as response,
    ):
        raw = await response.read()
    assert raw.startswith(b": keepalive")
    assert response.headers["x-gateway-request-id"] == "kept-1"
