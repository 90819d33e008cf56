"""Prices: genai-prices' table found for every provider type, the gateway's arithmetic equal to
genai-prices' own for every model it lists, gateway.toml's overrides, and what a request may use
at most (gateway/pricing/)."""

from __future__ import annotations

import asyncio
import re
import warnings
from decimal import Decimal

import msgspec
import orjson
import pytest
from aiohttp import web
from genai_prices import Usage, calc_price, data_snapshot
from genai_prices.data import providers as table_providers
from genai_prices.types import ModelPrice

from gateway.config import parse, shared_state_problem
from gateway.policy.keys import GatewayKey
from gateway.policy.pricing import Prices, PriceUnknown, Tokens, tokens_of
from gateway.policy.pricing.prices import CACHED_PRICES
from gateway.policy.pricing.table import rates_of
from gateway.server.parsing import parse_request
from wire.ask import Ask, ask_of
from wire.config_values import ConfigError
from wire.operations import Operation
from wire.usage import from_openai

# Usages that exercise every rule: cached reads and writes taken out of the input, reasoning
# out of the output, long-context tiers (past 200k input tokens), nothing at all.
USAGES = [
    Tokens(1000, 200),
    Tokens(1000, 200, cache_read=300),
    Tokens(1000, 200, cache_read=300, cache_write=100),
    Tokens(250_000, 5000, cache_read=1000, cache_write=2000, reasoning=100),
    Tokens(300_000, 10, reasoning=5),
    Tokens(1, 1, reasoning=1),
    Tokens(0, 0),
]


def _usage(tokens: Tokens) -> Usage:
    return Usage(
        input_tokens=tokens.input,
        output_tokens=tokens.output,
        cache_read_tokens=tokens.cache_read,
        cache_write_tokens=tokens.cache_write,
        output_reasoning_tokens=tokens.reasoning,
    )


def test_the_cost_is_genai_prices_own_for_every_model_and_price_in_its_table() -> None:
    compared = 0
    for provider in table_providers:
        for model in provider.models:
            variants = (
                [model.prices]
                if isinstance(model.prices, ModelPrice)
                else [conditional.prices for conditional in model.prices]
            )
            for price in variants:
                rates = rates_of(price)
                for tokens in USAGES:
                    with warnings.catch_warnings():  # its own warnings on exotic units
                        warnings.simplefilter("ignore")
                        expected = price.calc_price(_usage(tokens))["total_price"]
                    assert rates.cost(tokens) == expected, (provider.id, model.id, tokens)
                    compared += 1
    assert compared > 10_000  # the whole table, not a corner of it


PROVIDERS = """
[providers.openai]
api_key = "x"
[providers.groq]
api_key = "x"
[providers.mygroq]
type = "openai"
base_url = "https://api.groq.com/openai/v1"
[providers.corp-openai]
type = "openai"
base_url = "http://10.0.0.5:8000/v1"
[providers.anthropic]
api_key = "x"
[providers.azure]
base_url = "https://acme.openai.azure.com"
[providers.bedrock]
region = "us-west-2"
[providers.cloudflare]
account_id = "abc"
[providers.cohere]
api_key = "x"
[providers.gemini]
api_key = "x"
[providers.xai]
api_key = "x"
[providers.huggingface]
api_key = "x"
[providers.ollama]
[providers.vllm]
[providers.mylocal]
type = "openai"
base_url = "http://127.0.0.1:8000/v1"
[providers.mock]
"""


@pytest.mark.parametrize(
    ("served", "provider_id", "model_ref"),
    [
        ("openai/gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("groq/llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant"),
        ("mygroq/llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant"),  # by its URL
        ("anthropic/claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"),
        ("azure/gpt-4o", "azure", "gpt-4o"),
        ("bedrock/us.anthropic.claude-opus-4-6-v1", "aws", "us.anthropic.claude-opus-4-6-v1"),
        (
            "cloudflare/@cf/meta/llama-3.1-8b-instruct",
            "cloudflare",
            "@cf/meta/llama-3.1-8b-instruct",
        ),
        ("cohere/command-r-plus", "cohere", "command-r-plus"),
        ("gemini/gemini-2.5-flash", "google", "gemini-2.5-flash"),
        ("xai/grok-4", "x-ai", "grok-4"),
        (
            "huggingface/meta-llama/Llama-3.1-8B-Instruct:cerebras",
            "huggingface_cerebras",
            "meta-llama/Llama-3.1-8B-Instruct",
        ),
    ],
)
def test_each_provider_type_and_preset_is_priced_from_its_table(
    served: str, provider_id: str, model_ref: str
) -> None:
    prices = Prices(parse(PROVIDERS, "t.toml"))
    usage = {
        "prompt_tokens": 12_000,
        "completion_tokens": 700,
        "prompt_tokens_details": {"cached_tokens": 4000},
    }
    cost = prices.cost(served, served, from_openai(usage))
    expected = calc_price(
        Usage(input_tokens=12_000, output_tokens=700, cache_read_tokens=4000),
        model_ref,
        provider_id=provider_id,
    )
    assert cost.source == "table"
    assert cost.usd == expected.total_price > 0


@pytest.mark.parametrize(
    "served",
    [
        "mylocal/llama3",  # self-hosted, any URL
        "vllm/meta-llama/Llama-3.1-8B-Instruct",  # a local preset
        "ollama/llama3.2",
        "corp-openai/gpt-4o-mini",  # OpenAI's model name, but not OpenAI's host
        "openai/no-such-model",
        "azure/my-own-deployment",  # a deployment named by its owner
        "huggingface/meta-llama/Llama-3.1-8B-Instruct:fastest",  # the router's own pick
    ],
)
def test_a_model_no_table_knows_is_unknown_never_free(served: str) -> None:
    prices = Prices(parse(PROVIDERS, "t.toml"))
    cost = prices.cost(served, served, from_openai({"prompt_tokens": 10, "completion_tokens": 10}))
    assert cost.usd is None and cost.source == "unknown"
    assert cost.nanos is None
    assert prices.cost(served, served, from_openai({"prompt_tokens": 10})).nanos is None


def test_the_mock_costs_nothing_unless_priced() -> None:
    prices = Prices(parse(PROVIDERS, "t.toml"))
    assert prices.cost("mock/any", "mock/any", from_openai({"prompt_tokens": 10})).usd == 0
    priced = Prices(parse(PROVIDERS + "[prices.mock]\ninput = 1\noutput = 2\n", "t.toml"))
    cost = priced.cost(
        "mock/any", "mock/any", from_openai({"prompt_tokens": 10, "completion_tokens": 5})
    )
    assert cost.usd == Decimal("0.00002") and cost.source == "override"


OVERRIDES = """
[providers.openai]
api_key = "x"
[providers.mylocal]
type = "openai"
base_url = "http://127.0.0.1:8000/v1"
[models.smart]
targets = ["openai/gpt-4o-mini"]
[models.cheap]
targets = ["openai/gpt-4o-mini"]
[prices."openai/gpt-4o"]
input = 1
output = 2
[prices.smart]
input = 10
output = 20
cache_read = 5
[prices.mylocal]
input = 0
output = 0
"""


def test_an_override_wins_over_the_table_most_specific_first() -> None:
    prices = Prices(parse(OVERRIDES, "t.toml"))
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}
    # provider/model over the table
    assert prices.cost("openai/gpt-4o", "openai/gpt-4o", from_openai(usage)).usd == 3
    # an alias's price for what serves it, over the table; the same model asked by name, or
    # through an alias without a price, is the table's
    assert prices.cost("openai/gpt-4o-mini", "smart", from_openai(usage)).usd == 30
    assert prices.cost("openai/gpt-4o-mini", "cheap", from_openai(usage)).usd == Decimal("0.75")
    assert prices.cost(
        "openai/gpt-4o-mini", "openai/gpt-4o-mini", from_openai(usage)
    ).usd == Decimal("0.75")
    # a provider's price for each of its models: 0 for a free local server
    free = prices.cost("mylocal/llama3", "mylocal/llama3", from_openai(usage))
    assert free.usd == 0 and free.source == "override"


def test_cached_tokens_cost_the_cached_rate_not_the_input_rate() -> None:
    prices = Prices(parse(OVERRIDES, "t.toml"))
    cached = {
        "prompt_tokens": 1_000_000,
        "completion_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 600_000},
    }
    # 400k at 10 USD per million, 600k at the cached 5
    assert prices.cost("openai/gpt-4o-mini", "smart", from_openai(cached)).usd == 7
    # gpt-4o-mini's table: 0.15 input, 0.075 cached
    assert prices.cost("openai/gpt-4o-mini", "", from_openai(cached)).usd == Decimal("0.105")
    # a price without a cache rate charges cached tokens as input
    assert prices.cost("openai/gpt-4o", "", from_openai(cached)).usd == 1


def test_pricing_unknown_prices_every_model_no_one_knows() -> None:
    toml = OVERRIDES + "[pricing]\nunknown = { input = 3, output = 15 }\n"
    prices = Prices(parse(toml, "t.toml"))
    cost = prices.cost(
        "openai/no-such-model", "", from_openai({"prompt_tokens": 1000, "completion_tokens": 0})
    )
    assert cost.usd == Decimal("0.003") and cost.source == "default"


def _key(toml: str) -> GatewayKey:
    config = parse(toml, "t.toml")
    name, key = next(iter(config.keys.items()))
    return GatewayKey(name, key.value, key, re.compile(".*"))


def test_a_reservation_is_the_worst_case_over_every_target() -> None:
    toml = OVERRIDES + '[keys.k]\nvalue = "v"\nmax_spend = 10\n'
    prices = Prices(parse(toml, "t.toml"))
    key = _key(toml)
    ask = Ask(1000, 500)
    targets = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o")]
    # (1000 + 500) tokens at the highest rate of each: gpt-4o-mini's 0.6, the override's 2
    assert prices.reserve(key, "x", targets, Operation.CHAT, ask) == 1500 * 2 * 1000
    # embeddings have no output; no cap named: [pricing] default_max_tokens (4096)
    assert prices.reserve(key, "x", targets, Operation.EMBEDDINGS, ask) == 1000 * 2 * 1000
    assert prices.reserve(key, "x", targets, Operation.CHAT, Ask(0, None)) == 4096 * 2 * 1000
    # counting tokens runs no model
    assert prices.reserve(key, "x", targets, Operation.COUNT_TOKENS, ask) == 0


def test_a_key_with_max_spend_is_refused_what_it_cannot_be_charged() -> None:
    toml = OVERRIDES + '[keys.k]\nvalue = "v"\nmax_spend = 10\n'
    prices = Prices(parse(toml, "t.toml"))
    key = _key(toml)
    with pytest.raises(PriceUnknown) as refused:
        prices.reserve(
            key, "x", [("openai", "gpt-4o-mini"), ("openai", "nope")], Operation.CHAT, None
        )
    assert refused.value.status == 403 and refused.value.code == "price_unknown"
    assert "'openai/nope'" in refused.value.message and "[prices." in refused.value.message
    # speech is priced per character, not per token: not chargeable to max_spend...
    with pytest.raises(PriceUnknown, match="not priced in tokens"):
        prices.reserve(key, "x", [("openai", "tts-1")], Operation.SPEECH, None)
    # ...unless free
    assert prices.reserve(key, "x", [("mylocal", "kokoro")], Operation.SPEECH, None) == 0


def test_prices_are_looked_up_once_and_the_cache_is_bounded() -> None:
    prices = Prices(parse(OVERRIDES, "t.toml"))
    first = prices.price("openai", "gpt-4o-mini")
    assert prices.price("openai", "gpt-4o-mini") is first
    for n in range(CACHED_PRICES + 10):
        prices.price("openai", f"model-{n}")
    assert len(prices._cache) <= CACHED_PRICES


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        (
            {
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "prompt_tokens_details": {"cached_tokens": 40, "cache_creation_tokens": 10},
                "completion_tokens_details": {"reasoning_tokens": 20},
            },
            Tokens(100, 50, cache_read=40, cache_write=10, reasoning=20),
        ),
        (  # Responses
            {
                "input_tokens": 100,
                "output_tokens": 50,
                "input_tokens_details": {"cached_tokens": 40},
                "output_tokens_details": {"reasoning_tokens": 20},
            },
            Tokens(100, 50, cache_read=40, reasoning=20),
        ),
        (  # Anthropic's Messages: input_tokens leave the cache out
            {
                "input_tokens": 60,
                "cache_read_input_tokens": 30,
                "cache_creation_input_tokens": 10,
                "output_tokens": 50,
            },
            Tokens(100, 50, cache_read=30, cache_write=10),
        ),
        ({"prompt_tokens": 8, "total_tokens": 8}, Tokens(8, 0)),  # embeddings
        ({"total_tokens": 8}, Tokens(8, 0)),
        ({}, None),
        (None, None),
    ],
)
def test_tokens_are_read_from_every_usage_shape(
    usage: dict[str, object] | None, tokens: Tokens | None
) -> None:
    assert tokens_of(from_openai(usage)) == tokens


def test_what_a_request_may_use_is_read_from_its_body() -> None:
    def ask(operation: Operation, body: dict[str, object]) -> Ask:
        return ask_of(parse_request(orjson.dumps(body), operation).body)

    messages = [{"role": "user", "content": "x" * 400}]
    chat = ask(Operation.CHAT, {"model": "m", "messages": messages, "max_tokens": 50, "n": 2})
    assert 100 <= chat.input_tokens <= 120 and chat.max_output_tokens == 50
    assert chat.most_output(4096) == 100
    newer = {"model": "m", "messages": messages, "max_tokens": 50, "max_completion_tokens": 70}
    assert ask(Operation.CHAT, newer).max_output_tokens == 70
    responses = ask(Operation.RESPONSES, {"model": "m", "input": "hi", "max_output_tokens": 9})
    assert responses.max_output_tokens == 9
    uncapped = ask(Operation.CHAT, {"model": "m", "messages": messages})
    assert uncapped.max_output_tokens is None and uncapped.most_output(4096) == 4096
    gemini = {"contents": [], "generationConfig": {"maxOutputTokens": 30, "candidateCount": 3}}
    raw = {name: msgspec.Raw(orjson.dumps(value)) for name, value in gemini.items()}
    assert ask_of(raw) == Ask(sum(map(len, raw.values())) // 4, 30, 3)


def test_price_overrides_are_checked_at_start() -> None:
    with pytest.raises(ConfigError, match=r"prices\.nope: 'nope' is no configured provider"):
        parse(OVERRIDES + "[prices.nope]\ninput = 1\noutput = 1\n", "t.toml")
    with pytest.raises(ConfigError, match=r"prices\.mylocal/x\.output: USD per million"):
        parse(OVERRIDES + '[prices."mylocal/x"]\ninput = 1\noutput = -1\n', "t.toml")
    with pytest.raises(ConfigError, match=r"prices\.mock: .*required field `input`"):
        parse(OVERRIDES + "[providers.mock]\n[prices.mock]\noutput = 1\n", "t.toml")
    with pytest.raises(ConfigError, match=r"keys\.k\.max_spend: must be a positive number"):
        parse(OVERRIDES + '[keys.k]\nvalue = "v"\nmax_spend = 0\n', "t.toml")


def test_several_workers_with_a_max_spend_want_shared_state() -> None:
    config = parse(OVERRIDES + '[keys.k]\nvalue = "v"\nmax_spend = 1\n', "t.toml")
    problem = shared_state_problem(config, 2)
    assert problem is not None and "keys.k" in problem and "redis_url" in problem


async def test_with_update_on_the_table_is_refreshed_from_its_url() -> None:
    """The snapshot replaced in the background (genai-prices' updater) is what prices read."""
    served = [
        {
            "id": "openai",
            "name": "OpenAI",
            "api_pattern": "https://api\\.openai\\.com",
            "models": [
                {
                    "id": "gpt-4o-mini",
                    "match": {"equals": "gpt-4o-mini"},
                    "prices": {"input_mtok": 7, "output_mtok": 11},
                }
            ],
        }
    ]

    async def table(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(served), content_type="application/json")

    app = web.Application()
    app.router.add_get("/data.json", table)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    toml = (
        OVERRIDES + f'[pricing]\nupdate = true\nupdate_url = "http://127.0.0.1:{port}/data.json"\n'
    )
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}
    prices = Prices(parse(toml, "t.toml"))
    try:
        before = prices.cost("openai/gpt-4o-mini", "", from_openai(usage)).usd
        assert before == Decimal("0.75")  # the shipped snapshot, until the fetch lands
        for _ in range(200):
            if data_snapshot.get_snapshot().from_auto_update:
                break
            await asyncio.sleep(0.05)
        assert prices.cost("openai/gpt-4o-mini", "", from_openai(usage)).usd == 18
    finally:
        prices.close()
        data_snapshot.set_custom_snapshot(None)
        await runner.cleanup()
