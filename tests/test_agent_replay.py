"""The coding agents' real requests, replayed through every provider type the suite fakes.

Claude Code, Codex CLI and Gemini CLI requests, captured byte for byte
(tests/fixtures/agents/, README there), are sent to the gateway as the client sent them, with
the provider under test as `[server] default_provider` (the clients send bare model names),
behind a fake upstream answering in that provider's documented wire format
(tests/provider_fakes.py). Each must get a 200 and a well-formed answer in the client's own
format, read with its SDK's own types (tests/agent_traffic.py), carrying the upstream's text.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.agent_traffic import AGENT_REQUESTS, agent_request, read_answer
from tests.conftest import FakeUpstream, GatewayFactory
from tests.provider_fakes import FAKES

# The OpenAI fake with its own Responses API differs from the chat-only one only on
# /v1/responses: Codex's requests.
CASES = [
    (name, provider)
    for name in AGENT_REQUESTS
    for provider in FAKES
    if provider != "openai" or name.startswith("codex_")
]


def test_every_kind_of_agent_request_is_captured() -> None:
    kinds = {agent_request(name).kind for name in AGENT_REQUESTS}
    assert kinds == {"messages", "count_tokens", "responses", "gemini_stream", "gemini"}
    assert len(AGENT_REQUESTS) == 11


@pytest.mark.parametrize(("name", "provider"), CASES)
async def test_agent_request_gets_a_well_formed_answer(
    name: str, provider: str, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    fake = FAKES[provider]
    if fake.handler is not None:
        upstream.handler = fake.handler
    url = await start_gateway(fake.toml(upstream.url))
    request = agent_request(name)
    status, content_type, body = await request.send(url)
    assert status == 200, body[:600].decode(errors="replace")
    answer = read_answer(request.kind, content_type, body)
    if request.kind == "count_tokens":
        return  # a count, checked by read_answer; an estimate where the provider has none
    if fake.text is None:  # the mock: its reply, or a call of one of the offered tools
        assert answer.text or answer.calls
    else:
        assert answer.text == fake.text
        assert upstream.requests, "the answer did not come from the upstream"


GEMINI_TYPES = {"OBJECT", "ARRAY", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "NULL"}


def _types(value: Any) -> set[str]:
    """Every `type` a JSON value holds, at any depth, in a schema sent as a JSON string too
    (Converse's `jsonSchema.schema`)."""
    if isinstance(value, list):
        return set().union(*map(_types, value)) if value else set()
    if not isinstance(value, dict):
        return set()
    found = {value["type"]} if isinstance(value.get("type"), str) else set()
    if isinstance(value.get("schema"), str):
        found |= _types(orjson.loads(value["schema"]))
    return found.union(*map(_types, value.values()))


@pytest.mark.parametrize("provider", ["openai-compat", "anthropic", "cohere", "bedrock", "ollama"])
async def test_gemini_cli_schema_reaches_a_translated_upstream_in_json_schema_types(
    provider: str, upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    """Gemini CLI's routing call asks for JSON in Gemini's upper-case types ("OBJECT"); an
    upstream that speaks JSON Schema gets them in its spelling (OpenAI and Anthropic refuse
    the other)."""
    fake = FAKES[provider]
    upstream.handler = fake.handler
    url = await start_gateway(fake.toml(upstream.url))
    status, _, body = await agent_request("gemini_cli_routing").send(url)
    assert status == 200, body[:600].decode(errors="replace")
    sent = _types(upstream.last_body)
    assert "object" in sent and not sent & GEMINI_TYPES, sent


async def test_claude_code_title_request_asks_no_reasoning_of_a_chat_upstream(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    """Its thinking is disabled (with `output_config.effort` set): a translation asks for none."""
    fake = FAKES["openai-compat"]
    upstream.handler = fake.handler
    url = await start_gateway(fake.toml(upstream.url))
    status, _, body = await agent_request("claude_code_title").send(url)
    assert status == 200, body[:600].decode(errors="replace")
    assert "reasoning_effort" not in upstream.last_body
