"""genai-prices' table: which of its providers a `[providers.NAME]` table is, and the rates of
one of its models there.

genai-prices (pydantic's, github.com/pydantic/genai-prices) ships a snapshot of its table in the
package, so prices are known offline; it is fetched anew only with `[pricing] update = true`.

A provider table is found in it by, in order:

1. its `base_url`, against each provider's API pattern (`https://api.groq.com/...` is Groq's,
   whatever the table is named or typed: an Anthropic-compatible host is priced as itself);
2. else its name, when it is a hosted preset of type openai (`[providers.openai]` pointed at a
   proxy is still OpenAI), or its type: anthropic, azure, bedrock (AWS), cloudflare, cohere,
   gemini (Google);
3. else nothing: a self-hosted server (`vllm`, `lmstudio`, `llamacpp`, `ollama`, any other
   OpenAI-compatible URL) has no table price; give it one in `[prices]` (0 for a free one).

Hugging Face's router names the inference provider after the model (`model:cerebras`), which is
genai-prices' `huggingface_cerebras`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from genai_prices import UpdatePrices, data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, TieredPrices

from gateway.policy.pricing.price import Price, Rate, Rates, Tiered
from providers.declaration import ProviderConfig

log = logging.getLogger("gateway")

# Hosted presets (providers/presets.py) -> genai-prices' provider ids. The local ones (vllm,
# lmstudio, llamacpp) are self-hosted: no table price.
_PRESETS = {
    "openai": "openai",
    "groq": "groq",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "openrouter": "openrouter",
    "together": "together",
    "fireworks": "fireworks",
    "xai": "x-ai",
    "perplexity": "perplexity",
    "cerebras": "cerebras",
    "huggingface": "huggingface",
}
# Provider types -> genai-prices' provider ids (openai: by URL or preset only; ollama and mock:
# none).
_TYPES = {
    "anthropic": "anthropic",
    "azure": "azure",
    "bedrock": "aws",
    "cloudflare": "cloudflare",
    "cohere": "cohere",
    "gemini": "google",
}
_HUGGINGFACE = "huggingface"


def provider_id(name: str, config: ProviderConfig) -> str | None:
    """genai-prices' id of the provider a table reaches; None: none (self-hosted)."""
    kind = config.type_name
    base_url = getattr(config, "base_url", "") or ""
    if base_url:
        for provider in data_snapshot.get_snapshot().providers:
            if re.match(provider.api_pattern, base_url):
                return provider.id
    if kind == "openai":
        return _PRESETS.get(name)
    return _TYPES.get(kind)


def table_price(provider: str, model: str, label: str) -> Price | None:
    """`model`'s price at genai-prices' `provider`, or None when the table has none."""
    if provider == _HUGGINGFACE:
        model, sep, host = model.rpartition(":")
        if not sep:
            return None  # the router's own choice (":fastest", or none): unknown
        provider = f"huggingface_{host.lower()}"
    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider, None)
    except LookupError:
        return None
    if isinstance(info.prices, ModelPrice):
        return Price(label, "table", rates_of(info.prices))
    return Price(label, "table", None, _dated(info))


def _dated(info: ModelInfo) -> Callable[[datetime], Rates]:
    """The rates in force at a moment, for a model whose price changed on a date or changes
    with the time of day; each variant's rates are read once."""
    seen: dict[int, Rates] = {}

    def at(moment: datetime) -> Rates:
        price = info.get_prices(moment)
        rates = seen.get(id(price))
        if rates is None:
            rates = seen[id(price)] = rates_of(price)
        return rates

    return at


def rates_of(price: ModelPrice) -> Rates:
    """The rates the gateway charges of a genai-prices `ModelPrice`: its token rates (audio,
    image and search units are never reported by the gateway, so they cost 0 here as there)."""
    per_request = getattr(price, "requests_kcount", None)
    return Rates(
        input=_rate(price, "input_mtok"),
        output=_rate(price, "output_mtok"),
        cache_read=_rate(price, "cache_read_mtok"),
        cache_write=_rate(price, "cache_write_mtok"),
        reasoning=_rate(price, "output_reasoning_mtok"),
        per_request=per_request if isinstance(per_request, Decimal) else None,
    )


def _rate(price: ModelPrice, key: str) -> Rate | None:
    value: Any = getattr(price, key, None)
    if isinstance(value, TieredPrices):
        return Tiered(value.base, tuple((tier.start, tier.price) for tier in value.tiers))
    return value if isinstance(value, Decimal) else None


def snapshot_identity() -> object:
    """The table in use now (another object once a background update landed)."""
    return data_snapshot.get_snapshot()


def start_updates(url: str, interval: float) -> UpdatePrices:
    """Fetch the table now and every `interval` seconds in genai-prices' background thread
    (one per process, daemon: it ends with the process); a failed fetch keeps the table in
    use (and is logged by genai-prices)."""
    updates = UpdatePrices(update_interval=interval, url=url)
    updates.start()
    log.info("prices: genai-prices' table is refreshed every %.0f s from %s", interval, url)
    return updates
