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
