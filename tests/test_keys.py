"""Gateway keys and their limits, in one process: who may call, which models, how much.

Read through the official OpenAI SDK, whose AuthenticationError, PermissionDeniedError and
RateLimitError must come out of the gateway's answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest

from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.key_usage import spent_beyond
from tests.streams import answering, chat_completion

MESSAGES = [{"role": "user", "content": "hi"}]
KEYS = """
[keys.team-a]
value = "sk-team-a-secret"
models = ["mock/*", "smart"]

[keys.team-b]
value = "env.GATEWAY_TEST_TEAM_B"
rpm = 3
"""
ADMIN = '[admin]\nkey = "sk-admin"\n'
MOCK = '[providers.mock]\ntype = "mock"\ndelay = 0\ntokens = 5\n'


def sdk(url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


@pytest.fixture
async def keyed(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    monkeypatch.setenv("GATEWAY_TEST_TEAM_B", "sk-team-b-secret")
    yield await start_gateway(MOCK + '[models.smart]\ntargets = ["mock/x"]\n' + KEYS)


async def test_no_key_or_an_unknown_key_is_a_401(keyed: str) -> None:
    async with sdk(keyed, "sk-not-a-key") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model="mock/x", messages=MESSAGES)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "invalid_api_key"
    assert "sk-not-a-key" not in caught.value.message  # a key is never echoed
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{keyed}/v1/chat/completions", json={"model": "mock/x", "messages": MESSAGES}
        ) as response,
    ):
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    "method, path", [("POST", "/v1/chat/completions"), ("GET", "/v1/keys/usage")]
)
async def test_a_key_that_is_not_ascii_is_a_401_not_a_500(
    start_gateway: GatewayFactory, method: str, path: str
) -> None:
    url = await start_gateway(MOCK + KEYS.replace("env.GATEWAY_TEST_TEAM_B", "sk-b") + ADMIN)
    # Raw header bytes: \xff is no UTF-8 (aiohttp hands it over as a surrogate), é is.
    for key in (b"Bearer \xff", "Bearer é".encode()):
        reader, writer = await asyncio.open_connection(*url.removeprefix("http://").split(":"))
        writer.write(
            method.encode() + b" " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n"
            b"Connection: close\r\nAuthorization: " + key + b"\r\n\r\n{}"
        )
        head = await reader.readline()
        writer.close()
        assert head.split()[1] == b"401", (key, head)


async def test_a_key_is_accepted_from_each_sdks_header(keyed: str) -> None:
    body = {"model": "mock/x", "messages": MESSAGES}
    async with aiohttp.ClientSession() as session:
        for header in (
            {"Authorization": "Bearer sk-team-a-secret"},  # OpenAI SDK
            {"x-api-key": "sk-team-a-secret"},  # Anthropic SDK
            {"x-goog-api-key": "sk-team-a-secret"},  # google-genai SDK
            {"x-gateway-key": "sk-team-a-secret", "Authorization": "Bearer sk-provider"},
        ):
            async with session.post(
                f"{keyed}/v1/chat/completions", json=body, headers=header
            ) as response:
                assert response.status == 200, header


async def test_probes_need_no_key(keyed: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{keyed}/health") as response:
        assert response.status == 200


async def test_a_model_the_key_may_not_use_is_a_403_naming_it(keyed: str) -> None:
    async with sdk(keyed, "sk-team-a-secret") as client:
        assert (await client.chat.completions.create(model="smart", messages=MESSAGES)).choices
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await client.chat.completions.create(model="other/x", messages=MESSAGES)
        assert "'other/x'" in caught.value.message
        assert isinstance(caught.value.body, dict)
        assert caught.value.body["code"] == "model_not_allowed"
        with pytest.raises(openai.PermissionDeniedError):  # nor through a fallback
            await client.chat.completions.create(
                model="mock/x", messages=MESSAGES, extra_body={"fallbacks": ["other/x"]}
            )


async def test_rpm_is_a_429_with_retry_after_and_openais_headers(keyed: str) -> None:
    async with sdk(keyed, "sk-team-b-secret") as client:
        for remaining in ("2", "1", "0"):
            raw = await client.chat.completions.with_raw_response.create(
                model="mock/x", messages=MESSAGES
            )
            assert raw.headers["x-ratelimit-limit-requests"] == "3"
            assert raw.headers["x-ratelimit-remaining-requests"] == remaining
            assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="mock/x", messages=MESSAGES)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "rate_limit_exceeded"
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"


async def test_tpm_counts_the_answers_usage_and_refuses_once_spent(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(MOCK + '[keys.k]\nvalue = "sk-k"\ntpm = 20\n')
    async with sdk(url, "sk-k") as client:
        used = 0
        while used < 20:  # each answer's usage is charged once it ended
            answer = await client.chat.completions.create(model="mock/x", messages=MESSAGES)
            assert answer.usage is not None
            used += answer.usage.total_tokens
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="mock/x", messages=MESSAGES)
    assert "tokens per minute" in caught.value.message


async def test_streamed_usage_is_charged_to_the_budget_then_insufficient_quota(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(
        MOCK + '[keys.k]\nvalue = "sk-k"\nbudget = 12\n[admin]\nkey = "sk-admin"\n'
    )
    async with sdk(url, "sk-k") as client:
        stream = await client.chat.completions.create(
            model="mock/x", messages=MESSAGES, stream=True
        )
        usage = [chunk.usage async for chunk in stream if chunk.usage]
        assert usage and usage[0].total_tokens >= 12  # one stream spends the whole budget
        assert await spent_beyond(url, 0) >= 12  # charged after the last byte
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="mock/x", messages=MESSAGES, stream=True)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "insufficient_quota"
    assert "renews in" in caught.value.message


async def test_max_parallel_refuses_the_request_over_the_limit(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(
        '[providers.mock]\ntype = "mock"\ndelay = 0.1\ntokens = 5\n'
        '[keys.k]\nvalue = "sk-k"\nmax_parallel = 2\n'
    )
    async with sdk(url, "sk-k") as client:
        results = await asyncio.gather(
            *(client.chat.completions.create(model="mock/x", messages=MESSAGES) for _ in range(3)),
            return_exceptions=True,
        )
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(refused) == 1 and len(results) - len(refused) == 2


async def test_a_running_stream_is_never_cut_by_a_limit(start_gateway: GatewayFactory) -> None:
    url = await start_gateway(
        '[providers.mock]\ntype = "mock"\ndelay = 0.01\ntokens = 30\n'
        '[keys.k]\nvalue = "sk-k"\ntpm = 10\n'
    )
    async with sdk(url, "sk-k") as client:
        stream = await client.chat.completions.create(
            model="mock/x", messages=MESSAGES, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert len(text.split()) == 30  # far past 10 tokens: admitted streams finish


async def test_a_missing_provider_key_is_a_502_not_the_clients_401(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_TEST_NO_SUCH_KEY", raising=False)
    url = await start_gateway(
        provider_toml("http://127.0.0.1:9/v1", api_key="env.GATEWAY_TEST_NO_SUCH_KEY")
        + '[keys.k]\nvalue = "sk-k"\n'
    )
    async with sdk(url, "sk-k") as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="fake/m", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert "GATEWAY_TEST_NO_SUCH_KEY" in caught.value.message and "'fake'" in caught.value.message


async def test_the_upstream_refusing_the_gateways_key_is_a_502_naming_the_provider(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(provider_toml(upstream.url, api_key="sk-revoked"))
    body = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
    upstream.handler = answering(body, status=401)
    async with sdk(url, "anything") as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="fake/m", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "provider_auth_failed"
    assert "'fake'" in caught.value.message and "Incorrect API key" in caught.value.message


async def test_forward_client_key_sends_the_clients_own_key_upstream(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    url = await start_gateway(
        provider_toml(upstream.url, api_key="sk-configured", forward_client_key=True)
        + '[keys.k]\nvalue = "sk-gateway"\n'
    )
    upstream.handler = answering(chat_completion("mine"))
    async with openai.AsyncOpenAI(
        base_url=f"{url}/v1",
        api_key="sk-users-own-provider-key",
        default_headers={"x-gateway-key": "sk-gateway"},
        max_retries=0,
    ) as client:
        await client.chat.completions.create(model="fake/m", messages=MESSAGES)
    sent = upstream.requests[-1]["headers"]
    assert sent["Authorization"] == "Bearer sk-users-own-provider-key"
    # ... and the gateway key never leaves the gateway.
    assert "sk-gateway" not in str(upstream.requests[-1])


async def test_usage_route_shows_each_keys_figures_to_the_admin_only(
    start_gateway: GatewayFactory,
) -> None:
    url = await start_gateway(
        MOCK + '[keys.k]\nvalue = "sk-k"\nbudget = 1000\nrpm = 100\n[admin]\nkey = "sk-admin"\n'
    )
    async with sdk(url, "sk-k") as client:
        await client.chat.completions.create(model="mock/x", messages=MESSAGES)
    await spent_beyond(url, 0)  # charged once it ended
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{url}/v1/keys/usage", headers={"Authorization": "Bearer sk-k"}
        ) as refused:
            assert refused.status == 401
        async with session.get(
            f"{url}/v1/keys/usage", headers={"Authorization": "Bearer sk-admin"}
        ) as response:
            assert response.status == 200
            usage = (await response.json())["data"]
    assert usage[0]["key"] == "k" and usage[0]["requests_last_minute"] == 1
    assert 0 < usage[0]["budget_spent"] < 1000
    assert usage[0]["budget_left"] == 1000 - usage[0]["budget_spent"]
    assert "sk-k" not in str(usage)


async def test_no_key_is_ever_logged(keyed: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with sdk(keyed, "sk-team-a-secret") as client:
        await client.chat.completions.create(model="mock/x", messages=MESSAGES)
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="other/x", messages=MESSAGES)
    async with sdk(keyed, "sk-wrong-secret") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="mock/x", messages=MESSAGES)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "sk-team-a-secret" not in logged and "sk-wrong-secret" not in logged


# --- `models` (OpenRouter's list of models for the upstream to choose from) ---


@pytest.fixture
async def router_keyed(upstream: FakeUpstream, start_gateway: GatewayFactory) -> str:
    """An OpenRouter-like provider `router` (it reads `models` as its own model names), the
    mock, an alias over both, and a key that may use router/openai/* and the alias."""
    upstream.handler = answering(chat_completion("Hi"))
    return await start_gateway(
        MOCK
        + provider_toml(upstream.url, "router", api_key="k")
        + '[models.both]\ntargets = ["router/openai/gpt-4o", "mock/x"]\n'
        + '[keys.narrow]\nvalue = "sk-narrow"\nmodels = ["router/openai/*", "both"]\n'
    )


async def test_models_in_the_body_are_checked_as_the_upstream_reads_them(
    router_keyed: str, upstream: FakeUpstream
) -> None:
    async with sdk(router_keyed, "sk-narrow") as client:
        allowed = ["openai/gpt-4o-mini", "openai/o3"]
        answer = await client.chat.completions.create(
            model="router/openai/gpt-4o", messages=MESSAGES, extra_body={"models": allowed}
        )
        assert answer.choices[0].message.content == "Hi"
        assert upstream.last_body["models"] == allowed  # forwarded as the client sent it
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await client.chat.completions.create(
                model="router/openai/gpt-4o",
                messages=MESSAGES,
                extra_body={"models": ["openai/gpt-4o-mini", "anthropic/claude-opus-4"]},
            )
        assert "'router/anthropic/claude-opus-4'" in caught.value.message
        assert isinstance(caught.value.body, dict)
        assert caught.value.body["code"] == "model_not_allowed"
        assert caught.value.body["param"] == "models"
        with pytest.raises(openai.PermissionDeniedError) as caught:  # each provider of an alias
            await client.chat.completions.create(
                model="both", messages=MESSAGES, extra_body={"models": ["openai/o3"]}
            )
        assert "'mock/openai/o3'" in caught.value.message
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/embeddings", "/v1/messages"])
async def test_models_are_checked_on_every_route(
    router_keyed: str, upstream: FakeUpstream, path: str
) -> None:
    body = {"model": "router/openai/gpt-4o", "models": ["anthropic/claude"], "input": "hi"}
    body |= {"max_tokens": 5, "messages": MESSAGES} if path == "/v1/messages" else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            router_keyed + path, json=body, headers={"Authorization": "Bearer sk-narrow"}
        ) as response,
    ):
        answer = await response.json()
    assert response.status == 403
    assert "'router/anthropic/claude'" in answer["error"]["message"]
    assert upstream.requests == []


@pytest.mark.parametrize("models", ["openai/o3", [1], {"a": "b"}])
async def test_models_that_are_not_a_list_of_names_are_a_400(
    router_keyed: str, upstream: FakeUpstream, models: object
) -> None:
    async with sdk(router_keyed, "sk-narrow") as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="router/openai/gpt-4o", messages=MESSAGES, extra_body={"models": models}
            )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "models"
    assert upstream.requests == []
