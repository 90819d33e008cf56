"""What one request cost: the figure the engine's record carries and every consumer reads (the
access log, the `x-gateway-cost-usd` header, `/metrics`, the limiter's spend, the console).

Worked out once per request by `gateway.policy.pricing` (the engine's `Pricing` port) from the
answer's typed `wire.usage.Usage`; nothing else prices a request.

Money is added up in whole nano-dollars (`NANOS_PER_USD`): integers add exactly in Redis and
across processes, and the cheapest token priced today (0.01 USD per million) is 10 of them.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

import msgspec

NANOS_PER_USD = 1_000_000_000
_NANO = Decimal(1) / NANOS_PER_USD

# Where a price came from: genai-prices' table; gateway.toml's [prices] (or the mock's
# built-in 0); [pricing] unknown, for a model no table knows; nowhere (its cost is unknown);
# the response cache (a hit: no upstream was called, it cost 0).
Source = Literal["table", "override", "default", "unknown", "cache"]


class Cost(msgspec.Struct, frozen=True, gc=False):
    """What a request cost, and by which price."""

    usd: Decimal | None  # None: the price is unknown (never taken for 0)
    source: Source

    @property
    def nanos(self) -> int | None:
        """Whole nano-dollars, for the counters that add costs up."""
        if self.usd is None:
            return None
        return int((self.usd / _NANO).to_integral_value(ROUND_HALF_EVEN))

    @property
    def header(self) -> str | None:
        """The cost as the `x-gateway-cost-usd` header gives it (plain decimal, no exponent);
        None when unknown."""
        if self.usd is None:
            return None
        return f"{self.usd.normalize():f}"
