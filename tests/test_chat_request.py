"""The typed chat request the translating providers read: bad shapes are 400s, never 500s."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import FakeUpstream, GatewayFactory


@pytest.mark.parametrize("kind", ["gemini", "ollama", "cohere", "anthropic"])
@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "json_schema", "json_schema": "x"}, "response_format.json_schema"),
        (
            {"type": "json_schema", "json_schema": {"name": "n", "schema": 3}},
            "response_format.json_schema.schema",
        ),
    ],
)
async def test_malformed_response_format_is_400_naming_it_for_every_translating_provider(
    upstream: FakeUpstream,
    start_gateway: GatewayFactory,
    kind: str,
    response_format: dict,
    param: str,
) -> None:
    url = await start_gateway(
        f'[providers.p]\ntype = "{kind}"\nbase_url = "{upstream.url}"\napi_key = "k"\n'
    )
    body = {
        "model": "p/m",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": response_format,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/chat/completions", json=body) as response,
    ):
        error = (await response.json())["error"]
    assert response.status == 400
    assert error["param"] in (param, "response_format")  # anthropic refuses any JSON mode
    assert upstream.requests == []


@pytest.mark.parametrize("kind", ["gemini", "ollama", "cohere", "anthropic", "bedrock"])
@pytest.mark.parametrize(
    "tool_choice",
    ["sometimes", {"type": "function"}, {"type": "tool", "function": {"name": "f"}}, 3],
)
async def test_malformed_tool_choice_is_400_naming_it_for_every_translating_provider(
    upstream: FakeUpstream, start_gateway: GatewayFactory, kind: str, tool_choice: object
) -> None:
    extra = 'access_key_id = "AKID"\nsecret_access_key = "secret"\n' if kind == "bedrock" else ""
    url = await start_gateway(
        f'[providers.p]\ntype = "{kind}"\nbase_url = "{upstream.url}"\napi_key = "k"\n{extra}'
    )
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = {
        "model": "p/m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": tools,
        "tool_choice": tool_choice,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/chat/completions", json=body) as response,
    ):
        error = (await response.json())["error"]
    assert response.status == 400
    assert error["param"].startswith("tool_choice")
    assert upstream.requests == []
