"""One model's price, and what a request's tokens cost at it.

Rates are USD per million tokens, as genai-prices and the providers' price pages give them,
kept as `Decimal` so that a cost is exactly genai-prices' (`ModelPrice.calc_price`), which
adds `rate * tokens / 1e6` per kind of token. Its rules, followed here:

- input tokens are the whole input, cached reads and cache writes included; when the model
  has a cache-read (cache-write) rate, those tokens are taken out of the input and charged at
  it, else they stay input (so a provider without a cache price charges them as input);
- reasoning tokens are part of the output; a model with a reasoning rate of its own charges
  them at it;
- a tiered rate (Anthropic's and Gemini's long-context prices) applies to all tokens of its
  kind once the request's input passes the tier's start;
- a price per request (Perplexity's) is charged once.

genai-prices' own `calc_price` costs about 115 us a call (a registry walk per call); this
arithmetic, a few Decimal products, costs a few microseconds, and tests/test_pricing.py checks
it equals genai-prices' for every model in the snapshot.

A cost (`wire.cost.Cost`) is counted in whole nano-dollars where it is added up (budgets,
spend per key and model, gateway.policy.limits).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from wire.cost import NANOS_PER_USD, Cost, Source

_MILLION = Decimal(1_000_000)
_THOUSAND = Decimal(1000)


class Tokens(msgspec.Struct, frozen=True, gc=False):
    """A request's token counts, as its answer's usage reports them."""

    input: int  # all of the input, cached reads and cache writes included
    output: int  # all of the output, reasoning included
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output


class Tiered(msgspec.Struct, frozen=True, gc=False):
    """A rate that changes with the request's input: `tiers` are (start, rate), ascending."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...]

    def at(self, input_tokens: int) -> Decimal:
        for start, rate in reversed(self.tiers):
            if input_tokens > start:
                return rate
        return self.base

    @property
    def most(self) -> Decimal:
        return max((self.base, *(rate for _, rate in self.tiers)))


Rate = Decimal | Tiered


class Rates(msgspec.Struct, frozen=True, gc=False):
    """USD per million tokens of each kind; None: that kind has no rate of its own."""

    input: Rate | None = None
    output: Rate | None = None
    cache_read: Rate | None = None
    cache_write: Rate | None = None
    reasoning: Rate | None = None
    per_request: Decimal | None = None  # USD per thousand requests

    def cost(self, tokens: Tokens) -> Decimal:
        # A report whose parts pass their whole (cached reads above the input) is read as
        # the parts being right: genai-prices refuses it, and a cost must still be found.
        inputs = max(tokens.input, tokens.cache_read + tokens.cache_write)
        outputs = max(tokens.output, tokens.reasoning)
        plain_input = inputs
        total = Decimal(0)
        if self.cache_read is not None:
            plain_input -= tokens.cache_read
            total += _rate(self.cache_read, inputs) * tokens.cache_read
        if self.cache_write is not None:
            plain_input -= tokens.cache_write
            total += _rate(self.cache_write, inputs) * tokens.cache_write
        plain_output = outputs
        if self.reasoning is not None:
            plain_output -= tokens.reasoning
            total += _rate(self.reasoning, inputs) * tokens.reasoning
        if self.input is not None:
            total += _rate(self.input, inputs) * plain_input
        if self.output is not None:
            total += _rate(self.output, inputs) * plain_output
        cost = total / _MILLION
        if self.per_request is not None:
            cost += self.per_request / _THOUSAND
        return cost

    @property
    def priced(self) -> bool:
        """Whether tokens have a price here at all (a speech model's has none per token)."""
        return self.input is not None or self.output is not None

    @property
    def most(self) -> Decimal:
        """The highest rate of any kind of token, at any tier: USD per million."""
        rates = (self.input, self.output, self.cache_read, self.cache_write, self.reasoning)
        return max((_most(rate) for rate in rates if rate is not None), default=Decimal(0))


def _rate(rate: Rate, input_tokens: int) -> Decimal:
    return rate if isinstance(rate, Decimal) else rate.at(input_tokens)


def _most(rate: Rate) -> Decimal:
    return rate if isinstance(rate, Decimal) else rate.most


def _bound(rates: Rates | None) -> tuple[float, float] | None:
    """(nano-USD per token at the highest rate, nano-USD per request): a reservation's bound,
    in floats (it is rounded up whole; it needs no exactness)."""
    if rates is None or not rates.priced:
        return None
    per_request = float(rates.per_request or 0) * NANOS_PER_USD / 1000  # priced per thousand
    return float(rates.most) * NANOS_PER_USD / 1_000_000, per_request


class Price:
    """One `provider/model`'s price, looked up once (gateway.policy.pricing.prices) and kept.

    `rates` is fixed, or (a table price with dated or time-of-day variants, such as
    DeepSeek's off-peak hours) resolved at the moment of the request.
    """

    __slots__ = ("_at", "_bound", "label", "rates", "source")

    def __init__(
        self,
        label: str,
        source: Source,
        rates: Rates | None,
        at: Callable[[datetime], Rates] | None = None,
    ) -> None:
        self.label = label  # "provider/model"
        self.source = source
        self.rates = rates  # None: unknown (or dated: see `at`)
        self._at = at
        self._bound = _bound(rates)  # read on every reservation: worked out once

    @property
    def known(self) -> bool:
        return self.source != "unknown"

    def rates_now(self) -> Rates | None:
        if self._at is not None:
            return self._at(datetime.now(UTC))
        return self.rates

    def worst(self, tokens: int) -> int | None:
        """The most `tokens` tokens may cost at this price, each at the highest rate of any
        kind and tier (and its price per request), in nano-USD rounded up; None when tokens
        have no price here."""
        bound = self._bound if self._at is None else _bound(self.rates_now())
        if bound is None:
            return None
        per_token, per_request = bound
        return math.ceil(tokens * per_token + per_request)

    def cost(self, tokens: Tokens) -> Cost:
        rates = self.rates_now()
        if rates is None:
            return Cost(None, "unknown")
        return Cost(rates.cost(tokens), self.source)

    def __repr__(self) -> str:
        return f"Price({self.label!r}, {self.source}, {self.rates_now()!r})"
