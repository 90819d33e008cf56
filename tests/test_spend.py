"""Spend through the gateway, in one process: each request's cost from its answer's usage, shown
by GET /v1/keys/usage per key and per model, and `max_spend` held before the upstream is called
so that requests at once never overspend by more than one reservation."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import aiohttp
import openai
import orjson
from genai_prices import Usage, calc_price

from gateway.policy.limits import NANOS_PER_USD
from tests.conftest import FakeUpstream, GatewayFactory, provider_toml
from tests.streams import DONE, answering, chat_chunk, chat_completion, data, streaming

ADMIN = '[admin]\nkey = "sk-admin"\n'
MESSAGES = [{"role": "user", "content": "hi"}]
# What the fake OpenAI answers: 12,000 input tokens of which 4,000 were read from its cache.
USAGE = {
    "prompt_tokens": 12_000,
    "completion_tokens": 700,
    "total_tokens": 12_700,
    "prompt_tokens_details": {"cached_tokens": 4000},
}


def openai_on(upstream: FakeUpstream) -> str:
    """A table named openai on the fake upstream: priced as OpenAI (a proxy in front of it)."""
    return provider_toml(upstream.url, "openai", api_key="sk-upstream")


async def usage_of(url: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/v1/keys/usage", headers={"Authorization": "Bearer sk-admin"}) as r,
    ):
        assert r.status == 200
        report: dict[str, Any] = (await r.json())["data"][0]
        return report


def nanos(usd: float | Decimal) -> int:
    return round(Decimal(str(usd)) * NANOS_PER_USD)


async def test_a_request_to_gpt_4o_mini_costs_exactly_what_genai_prices_computes(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    answer = chat_completion("hello")
    answer["usage"] = USAGE
    upstream.handler = answering(answer)
    url = await start_gateway(openai_on(upstream) + '[keys.k]\nvalue = "sk-k"\n' + ADMIN)
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-k", max_retries=0) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=MESSAGES
        )
    expected = calc_price(
        Usage(input_tokens=12_000, output_tokens=700, cache_read_tokens=4000),
        "gpt-4o-mini",
        provider_id="openai",
    ).total_price
    # 8,000 at 0.15 USD per million, the 4,000 cached at 0.075, 700 output at 0.6
    assert expected == Decimal("0.00192")
    assert Decimal(raw.headers["x-gateway-cost-usd"]) == expected  # a whole answer's header
    report = await usage_of(url)
    assert nanos(report["spend_usd"]) == nanos(expected)
    assert report["spend_by_model"] == {"openai/gpt-4o-mini": report["spend_usd"]}
    assert report["max_spend_usd"] is None and report["spend_left_usd"] is None
    assert report["unpriced_requests"] == 0


async def test_a_streamed_answer_is_charged_its_usage_after_the_last_byte(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    events = [data(chat_chunk({"content": token})) for token in ("a", "b", "c")]
    events += [data(chat_chunk({}, "stop")), data(chat_chunk(choices=[], usage=USAGE)), DONE]
    upstream.handler = streaming(events)
    url = await start_gateway(openai_on(upstream) + '[keys.k]\nvalue = "sk-k"\n' + ADMIN)
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-k", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(
            model="openai/gpt-4o-mini", messages=MESSAGES, stream=True
        )
        async for _ in stream:
            pass
    # Its headers went before its cost was known: the log, /metrics and the usage route say it.
    assert "x-gateway-cost-usd" not in stream.response.headers
    report = await usage_of(url)
    assert nanos(report["spend_usd"]) == nanos(Decimal("0.00192"))


async def test_anthropics_usage_is_priced_with_its_cache_reads_and_writes(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    """/v1/messages passed through to Anthropic: its usage leaves the cache out of
    input_tokens; the cost is genai-prices' for the whole input."""
    upstream.handler = answering(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "hello"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 3000,
                "cache_read_input_tokens": 20_000,
                "cache_creation_input_tokens": 1000,
                "output_tokens": 400,
            },
        }
    )
    anthropic = provider_toml(upstream.url, "anthropic", type="anthropic", api_key="sk-upstream")
    url = await start_gateway(anthropic + '[keys.k]\nvalue = "sk-k"\n' + ADMIN)
    body = {"model": "anthropic/claude-sonnet-4-5", "max_tokens": 400, "messages": MESSAGES}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/messages", json=body, headers={"x-api-key": "sk-k"}) as r,
    ):
        assert r.status == 200, await r.text()
    expected = calc_price(
        Usage(
            input_tokens=24_000,
            cache_read_tokens=20_000,
            cache_write_tokens=1000,
            output_tokens=400,
        ),
        "claude-sonnet-4-5",
        provider_id="anthropic",
    ).total_price
    # 3,000 at 3 USD per million, 20,000 read at 0.3, 1,000 written at 3.75, 400 out at 15
    assert expected == Decimal("0.02475")
    assert nanos((await usage_of(url))["spend_usd"]) == nanos(expected)


async def test_an_override_wins_over_the_table(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    answer = chat_completion("hello")
    answer["usage"] = USAGE
    upstream.handler = answering(answer)
    prices = '[prices."openai/gpt-4o-mini"]\ninput = 1\noutput = 10\ncache_read = 0.5\n'
    url = await start_gateway(openai_on(upstream) + prices + '[keys.k]\nvalue = "sk-k"\n' + ADMIN)
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-k", max_retries=0) as sdk:
        await sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    # 8,000 x 1 + 4,000 x 0.5 + 700 x 10, per million
    assert (await usage_of(url))["spend_usd"] == 0.017


async def test_a_model_with_no_price_is_refused_to_a_key_with_max_spend_and_never_free(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    answer = chat_completion("hello")
    upstream.handler = answering(answer)
    keys = '[keys.capped]\nvalue = "sk-capped"\nmax_spend = 5\n[keys.open]\nvalue = "sk-open"\n'
    url = await start_gateway(provider_toml(upstream.url, "mylocal") + keys + ADMIN)
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-capped", max_retries=0) as sdk:
        try:
            await sdk.chat.completions.create(model="mylocal/llama3", messages=MESSAGES)
        except openai.PermissionDeniedError as refused:
            error = refused.body
        else:
            raise AssertionError("served a model whose price nobody knows")
    assert isinstance(error, dict) and error["code"] == "price_unknown"
    assert "'mylocal/llama3'" in error["message"] and "[prices." in error["message"]
    assert not upstream.requests  # refused before any upstream was called
    # A key without max_spend is served; the cost is unknown, and said so.
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-open", max_retries=0) as sdk:
        await sdk.chat.completions.create(model="mylocal/llama3", messages=MESSAGES)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/v1/keys/usage", headers={"Authorization": "Bearer sk-admin"}) as r,
    ):
        reports = {report["key"]: report for report in (await r.json())["data"]}
    assert reports["open"]["unpriced_requests"] == 1 and reports["open"]["spend_usd"] == 0


async def test_max_spend_is_a_429_insufficient_quota_once_spent(
    upstream: FakeUpstream, start_gateway: GatewayFactory
) -> None:
    answer = chat_completion("hello")
    answer["usage"] = USAGE  # 0.00192 USD a request
    upstream.handler = answering(answer)
    key = '[keys.k]\nvalue = "sk-k"\nmax_spend = 0.005\n'
    url = await start_gateway(openai_on(upstream) + key + ADMIN)
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "max_tokens": 700}
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(5):
            async with session.post(
                f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-k"}
            ) as response:
                statuses.append(response.status)
                refusal = await response.json()
                retry_after = response.headers.get("Retry-After")
    assert statuses == [200, 200, 200, 429, 429]  # admitted while under: 3 x 0.00192 >= 0.005
    assert refusal["error"]["code"] == "insufficient_quota"
    assert "max_spend of 0.005 USD per 1d" in refusal["error"]["message"]
    assert retry_after is not None and int(retry_after) > 1  # the period's end
    report = await usage_of(url)
    assert report["spend_usd"] == 0.00576 and report["spend_left_usd"] == 0
    assert report["spend_held_usd"] == 0  # every reservation given back


async def test_requests_at_once_never_overspend_by_more_than_one_reservation(
    start_gateway: GatewayFactory,
) -> None:
    """50 requests at once on a key whose max_spend allows about 10: without reservations
    each would be checked against a spend of 0, and all 50 served."""
    url = await start_gateway(SPEND_MOCK + '[keys.k]\nvalue = "sk-k"\nmax_spend = 0.15\n' + ADMIN)
    spent = await spend_in_waves([url], 50)
    assert 0.15 <= spent["spend_usd"] <= 0.15 + RESERVATION_BOUND
    assert spent["spend_held_usd"] == 0


# The mock priced at 1,000 and 2,000 USD per million tokens (0.001 and 0.002 a token): a
# request of PRICED_BODY costs 0.013 USD (3 input tokens, 5 output), and reserves at most its
# body's bytes / 4 plus its 5 output tokens at 0.002 a token.
SPEND_MOCK = (
    '[providers.mock]\ntype = "mock"\ndelay = 0.02\ntokens = 5\n'
    "[prices.mock]\ninput = 1000\noutput = 2000\n"
    "[server]\naccess_log = false\n"
)
PRICED_BODY = orjson.dumps(
    {"model": "mock/x", "messages": [{"role": "user", "content": "hello world!"}], "max_tokens": 5}
)
RESERVATION_BOUND = (len(PRICED_BODY) / 4 + 5) * 0.002


async def spend_in_waves(urls: list[str], at_once: int) -> dict[str, Any]:
    """Waves of `at_once` requests sent together, spread over `urls`, until a wave is refused
    whole; every refusal must be a 429 insufficient_quota. The key's usage after."""
    served = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def post(url: str) -> int:
            async with session.post(
                f"{url}/v1/chat/completions",
                data=PRICED_BODY,
                headers={"Authorization": "Bearer sk-k", "Content-Type": "application/json"},
            ) as response:
                answer = await response.json()
                if response.status != 200:
                    assert response.status == 429, answer
                    assert answer["error"]["code"] == "insufficient_quota", answer
                return response.status

        for _ in range(20):
            statuses = await asyncio.gather(*(post(urls[i % len(urls)]) for i in range(at_once)))
            served += statuses.count(200)
            if statuses.count(200) == 0:
                break
            await settled(urls[0])
    assert 5 <= served <= 15, served  # about 10: the reservations held it, then freed it
    return await settled(urls[0])


async def settled(url: str) -> dict[str, Any]:
    """The key's usage once no reservation is held (charges land just after the answers)."""
    for _ in range(500):
        report = await usage_of(url)
        if report["spend_held_usd"] == 0 and report["in_flight"] == 0:
            return report
        await asyncio.sleep(0.02)
    raise AssertionError(f"reservations still held: {report}")
