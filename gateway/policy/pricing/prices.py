"""Every request's price: gateway.toml's `[prices]` over genai-prices' table, looked up once per
`provider/model` (and alias) and kept; a request's worst case reserved on a key with
`max_spend`; what it cost once its usage is known (the record's cost, which the limiter
charges and every observer reads).

A `provider/model`'s price is, the first that has one:

1. `[prices."provider/model"]`;
2. `[prices.ALIAS]`, when the client named that alias (whatever target serves it);
3. `[prices.PROVIDER]`, every model of the provider;
4. the built-in mock's 0;
5. genai-prices' table (gateway.policy.pricing.table);
6. `[pricing] unknown`, when set (source "default");
7. none: the price is unknown. A key with `max_spend` is refused such a model before any
   upstream is called (403 `price_unknown`, naming the model and what to set); a key without
   one is served, and its cost is unknown (never 0).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from gateway.config import Config, PriceConfig
from gateway.policy.keys import GatewayKey
from gateway.policy.pricing.price import Price, Rates, Tokens
from gateway.policy.pricing.table import (
    provider_id,
    snapshot_identity,
    start_updates,
    table_price,
)
from wire.ask import Ask
from wire.cost import Cost
from wire.errors import GatewayError
from wire.operations import Operation
from wire.usage import Usage

# Prices kept: a client may name any model of a configured provider, so the cache is bounded.
CACHED_PRICES = 4096
_MILLION = Decimal(1_000_000)
_THOUSAND = Decimal(1000)
_FREE = Rates(input=Decimal(0), output=Decimal(0))

# Priced per token; counting tokens costs nothing (no model runs).
TOKEN_OPERATIONS = frozenset(
    {
        Operation.CHAT,
        Operation.COMPLETIONS,
        Operation.RESPONSES,
        Operation.MESSAGES,
        Operation.GENERATE_CONTENT,
        Operation.EMBEDDINGS,
    }
)
FREE_OPERATIONS = frozenset({Operation.COUNT_TOKENS, Operation.COUNT_GEMINI_TOKENS})
_INPUT_ONLY = frozenset({Operation.EMBEDDINGS})


class PriceUnknown(GatewayError):
    """A key with `max_spend` asked for a model whose price nobody knows: its spend could not
    be capped, and it is never taken for free."""

    status = 403
    type = "invalid_request_error"
    code = "price_unknown"


class Prices:
    """The prices of one config: built once per process, read by every request."""

    def __init__(self, config: Config) -> None:
        self._overrides = {name: _rates(price) for name, price in config.prices.items()}
        self._aliases = frozenset(config.models)
        self._unknown = _rates(config.pricing.unknown) if config.pricing.unknown else None
        self.default_max_tokens = config.pricing.default_max_tokens
        self._providers: dict[str, str | None] = {}
        self._free: set[str] = set()  # the mock
        for name, provider in config.providers.items():
            if provider.type_name == "mock":
                self._free.add(name)
            else:
                self._providers[name] = provider_id(name, provider)
        self._cache: dict[tuple[str, str, str], Price] = {}
        self._table = snapshot_identity()
        self._updates = None
        if config.pricing.update:
            pricing = config.pricing
            self._updates = start_updates(pricing.update_url, pricing.update_interval)

    def close(self) -> None:
        """Stop the background updates (the table fetched last stays in use)."""
        if self._updates is not None:
            self._updates.stop()  # type: ignore[no-untyped-call]  # unannotated there
            self._updates = None

    def price(self, provider: str, model: str, asked: str = "") -> Price:
        """The price of `model` at the provider table `provider`, for a request that named
        `asked` (an alias's own price applies to what serves it)."""
        alias = asked if asked in self._aliases and asked in self._overrides else ""
        key = (provider, model, alias)
        table = snapshot_identity()
        if table is not self._table:  # a background update landed: look up anew
            self._table = table
            self._cache.clear()
        price = self._cache.get(key)
        if price is not None:
            return price
        price = self._look_up(provider, model, alias)
        if len(self._cache) >= CACHED_PRICES:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = price
        return price

    def _look_up(self, provider: str, model: str, alias: str) -> Price:
        label = f"{provider}/{model}"
        for name in (label, alias, provider):
            rates = self._overrides.get(name) if name else None
            if rates is not None:
                return Price(label, "override", rates)
        if provider in self._free:
            return Price(label, "override", _FREE)
        provider_id = self._providers.get(provider)
        found = table_price(provider_id, model, label) if provider_id else None
        if found is not None:
            return found
        if self._unknown is not None:
            return Price(label, "default", self._unknown)
        return Price(label, "unknown", None)

    def reserve(
        self,
        key: GatewayKey,
        asked: str,
        targets: Iterable[tuple[str, str]],
        operation: Operation,
        ask: Ask | None,
    ) -> int:
        """The nano-USD to hold on `key` while the request runs: its worst case over every
        `(provider, model)` that may serve it (the tokens it may use at the highest rate of
        each). 0 for a key without `max_spend`. Raises `PriceUnknown` for a target with no
        price, or a price not in tokens for this operation (speech, transcription)."""
        if key.config.max_spend is None or operation in FREE_OPERATIONS:
            return 0
        ask = ask or Ask(0, None)
        output = 0 if operation in _INPUT_ONLY else ask.most_output(self.default_max_tokens)
        tokens = ask.input_tokens + output
        worst = 0
        for provider, model in targets:
            price = self.price(provider, model, asked)
            most = price.worst(tokens)
            if most is None:
                raise _unknown(key, price, operation)
            if operation not in TOKEN_OPERATIONS and price.worst(1) != 0:
                raise _unknown(key, price, operation)  # speech, transcription: unless free
            worst = max(worst, most)
        return worst

    def cost(self, served: str, asked: str, usage: Usage | None) -> Cost:
        """What a request cost (the engine's `Pricing` port, asked once per request that an
        upstream answered): `served` is the provider/model that answered, `asked` the model
        the client named, `usage` the answer's usage (None: not known)."""
        provider, _, model = served.partition("/")
        price = self.price(provider, model, asked)
        tokens = tokens_of(usage)
        if tokens is None:  # no usage: known only when nothing costs anything
            return Cost(Decimal(0) if price.worst(1) == 0 else None, price.source)
        return price.cost(tokens)


def _rates(price: PriceConfig) -> Rates:
    def rate(value: float | None) -> Decimal | None:
        # Through str: 0.15 stays 0.15, not the binary float's 0.1499999...
        return None if value is None else Decimal(str(value))

    return Rates(
        input=rate(price.input),
        output=rate(price.output),
        cache_read=rate(price.cache_read),
        cache_write=rate(price.cache_write),
    )


def _unknown(key: GatewayKey, price: Price, operation: Operation) -> PriceUnknown:
    what = (
        f"{operation.value} is not priced in tokens"
        if price.known and operation not in TOKEN_OPERATIONS
        else "its price is unknown"
    )
    return PriceUnknown(
        f"The key {key.name!r} has a max_spend, and model {price.label!r} cannot be charged to "
        f'it: {what}. Set its price in gateway.toml ([prices."{price.label}"] input and output, '
        "USD per million tokens; 0 for a free local model), or [pricing] unknown.",
        param="model",
    )


def tokens_of(usage: Usage | None) -> Tokens | None:
    """The token counts of an answer's usage (wire.usage reads every API's shape); None when
    it reports none."""
    if usage is None or not (usage.input or usage.output):
        return None
    return Tokens(
        usage.input,
        usage.output,
        usage.cache_read or 0,
        usage.cache_write or 0,
        usage.reasoning or 0,
    )
