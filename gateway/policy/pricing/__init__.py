"""Prices and spend: what each request costs, from genai-prices' table and gateway.toml's
`[prices]`, and what a key with `max_spend` reserves before its request runs.

- `price.py`: one model's rates and the arithmetic of a cost (`Tokens` -> `Cost`);
- `table.py`: genai-prices' table (which of its providers a provider table is);
- `prices.py`: `Prices`, the lookups of one config (overrides first), kept per model; the
  reservation (`Prices.reserve`) and the charge (`Prices.spent`) the limiter takes;
- `ask.py`: what a request may use at most, read from its body (`ask_of`).
"""

from gateway.policy.pricing.price import Price, Rates, Tokens
from gateway.policy.pricing.prices import Prices, PriceUnknown, tokens_of
from wire.ask import Ask, ask_of
from wire.cost import Cost, Source

__all__ = [
    "Ask",
    "Cost",
    "Price",
    "PriceUnknown",
    "Prices",
    "Rates",
    "Source",
    "Tokens",
    "ask_of",
    "tokens_of",
]
