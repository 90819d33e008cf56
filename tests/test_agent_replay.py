"""The coding agents' real requests, replayed through every provider type the suite fakes.

Claude Code, Codex CLI and Gemini CLI requests, captured byte for byte
(tests/fixtures/agents/, README there), are sent to the gateway as the client sent them, with
the provider under test as `[server] default_provider` (the clients send bare model names),
behind a fake upstream answering in that provider's documented wire format
(tests/provider_fakes.py). Each must get a 200 and a well-formed answer in the client's own
format, read with its SDK's own types (tests/agent_traffic.py), carrying the upstream's text.
"""

from __future__ import annotations

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
