"""Per-key limits: requests and tokens per minute, a token budget and a spend cap (USD) per
period, requests in flight. Checked before the upstream is called; tokens and cost charged once
the answer's usage is known.

Minute limits use a sliding window approximated from two fixed windows (the previous minute's
count weighted by how much of it still overlaps the last 60 s, plus this minute's), as
Cloudflare's and Envoy's rate limiters do: no burst of twice the limit across a minute
boundary, and two counters per key instead of a log of every request. The budget is a fixed
window aligned to its period (a "1d" budget resets at 00:00 UTC).

`LocalLimiter` keeps the counters in this process; `gateway.policy.redis_state.RedisLimiter` keeps
the same counters in Redis, so that several gateway processes or machines share one limit.
A stream already running is never cut for a limit: its tokens are charged when it ends.

Spend is held before it is known: a key with `max_spend` is admitted while what it spent this
period plus what its requests in flight hold is below the cap, and each admitted request holds
its worst-case cost (`reserve`, gateway.policy.pricing) until it settles to its real cost. Requests
admitted together so never overspend by more than the last one's reservation, however many run
at once and on however many processes. Money is counted in whole nano-dollars (integers add
exactly, in Redis too).
"""

from __future__ import annotations

import math
import time
from typing import Any, Protocol

import msgspec

from gateway.policy.keys import GatewayKey
from wire.cost import NANOS_PER_USD
from wire.errors import GatewayError

MINUTE = 60


class RateLimited(GatewayError):
    status = 429
    type = "requests"  # OpenAI's type for rate limits
    code = "rate_limit_exceeded"


class QuotaExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class LimitsUnavailable(GatewayError):
    """The shared state (Redis) cannot be reached and `on_redis_error = "closed"`."""

    status = 503
    type = "server_error"
    code = "limits_unavailable"


class UsageUnavailable(GatewayError):
    """The usage route cannot read the counters: Redis is unreachable (figures of 0 would
    say every key is unused)."""

    status = 503
    type = "server_error"
    code = "usage_unavailable"


class Admission(msgspec.Struct, gc=False):
    """A request let through under its key's limits; `settle` it once it ended."""

    key: GatewayKey
    id: str  # its mark in a shared in-flight set ("" in process)
    headers: dict[str, str]  # OpenAI's x-ratelimit-* for the answer
    counted: bool = True  # False: admitted without the shared state (it failed open)
    reserved: int = 0  # nano-USD held on the key's spend until it settles


class Spent(msgspec.Struct, frozen=True, gc=False):
    """What a request that ended adds to its key's spend."""

    nanos: int | None  # its cost in nano-USD; None: unknown, so its reservation is charged
    model: str = ""  # the provider/model that served it, for the spend per model


NOTHING = Spent(0)  # no upstream answered: nothing was billed


class Windows(msgspec.Struct, gc=False):
    """A key's counters at one moment: what the checks and the headers are computed from."""

    now: float
    requests: int  # this minute
    requests_before: int  # the minute before
    tokens: int
    tokens_before: int
    spent: int  # tokens in the current budget period
    in_flight: int
    money: int = 0  # nano-USD spent in the current budget period
    held: int = 0  # nano-USD reserved by the requests in flight
    unpriced: int = 0  # requests this budget period whose cost was unknown


class Limiter(Protocol):
    async def admit(self, key: GatewayKey, reserve: int = 0) -> Admission:
        """Let the request through or raise RateLimited / QuotaExceeded; with `reserve`
        (nano-USD, its worst-case cost: `gateway.policy.pricing.Prices.reserve`), hold that much of
        the key's `max_spend` until it settles."""
        ...

    def settle(self, admission: Admission, tokens: int, spent: Spent = NOTHING) -> None:
        """The request ended having used `tokens` (input + output) and cost `spent`: charge
        them, release its reservation, and it is no longer in flight. Never waits on the
        caller's behalf."""
        ...

    async def usage(self, key: GatewayKey) -> dict[str, Any]:
        """The key's counters now, for the usage route."""
        ...


def minute_index(now: float) -> tuple[int, float]:
    """This minute's number and how far into it `now` is (0..1)."""
    index = int(now // MINUTE)
    return index, (now - index * MINUTE) / MINUTE


def period_index(now: float, seconds: int) -> tuple[int, float]:
    """The budget period's number and the seconds left in it."""
    index = int(now // seconds)
    return index, (index + 1) * seconds - now


def sliding(current: int, before: int, into: float) -> float:
    """Use over the last 60 s: the previous minute weighted by how much of it still counts."""
    return before * (1.0 - into) + current


def check(key: GatewayKey, windows: Windows) -> None:
    """Raise the error for the first limit the key would pass with one more request."""
    config = key.config
    now = windows.now
    _, into = minute_index(now)
    if config.budget is not None and windows.spent >= config.budget:
        _, left = period_index(now, config.budget_seconds)
        raise _with_retry(
            QuotaExceeded(
                f"The key {key.name!r} has spent its budget of {config.budget} tokens per "
                f"{config.budget_period}; it renews in {_duration(left)}."
            ),
            left,
        )
    if config.max_spend is not None and windows.money + windows.held >= nanos(config.max_spend):
        _, left = period_index(now, config.budget_seconds)
        spent_out = windows.money >= nanos(config.max_spend)
        raise _with_retry(
            QuotaExceeded(
                f"The key {key.name!r} has spent its max_spend of {config.max_spend} USD per "
                f"{config.budget_period}; it renews in {_duration(left)}."
                if spent_out
                else f"The key {key.name!r} has reached its max_spend of {config.max_spend} USD "
                f"per {config.budget_period} with what its requests in flight hold "
                f"({usd(windows.money)} USD spent, {usd(windows.held)} USD held until they end)."
            ),
            left if spent_out else 1.0,  # held: free again as requests end
        )
    if config.max_parallel is not None and windows.in_flight >= config.max_parallel:
        raise _with_retry(
            RateLimited(
                f"The key {key.name!r} has {config.max_parallel} requests in flight, its limit."
            ),
            1.0,
        )
    if config.rpm is not None:
        used = sliding(windows.requests, windows.requests_before, into)
        if used + 1 > config.rpm:
            raise _with_retry(
                RateLimited(
                    f"Rate limit reached for key {key.name!r}: {config.rpm} requests per minute."
                ),
                _wait(config.rpm - 1, windows.requests, windows.requests_before, into),
                headers=headers(key, windows),
            )
    if config.tpm is not None:
        used = sliding(windows.tokens, windows.tokens_before, into)
        if used >= config.tpm:
            raise _with_retry(
                RateLimited(
                    f"Rate limit reached for key {key.name!r}: {config.tpm} tokens per minute."
                ),
                _wait(config.tpm - 1, windows.tokens, windows.tokens_before, into),
                headers=headers(key, windows),
            )


def _wait(room: float, current: int, before: int, into: float) -> float:
    """Seconds until the sliding count drops to `room`: the previous minute fades out
    linearly; this minute's count only leaves when the next minute begins."""
    if current > room:
        # Next minute this one becomes "before", weighted from 1 down.
        into_next = 1.0 - room / current if current else 0.0
        return (1.0 - into) * MINUTE + into_next * MINUTE
    if before <= 0:
        return 0.0
    # before * (1 - t) + current <= room  =>  t >= 1 - (room - current) / before
    target = 1.0 - (room - current) / before
    return max(0.0, (target - into) * MINUTE)


def _with_retry(
    error: GatewayError, seconds: float, headers: dict[str, str] | None = None
) -> GatewayError:
    error.headers.update(headers or {})
    error.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    return error


def headers(key: GatewayKey, windows: Windows) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the key's minute limits (after this request)."""
    config = key.config
    out: dict[str, str] = {}
    _, into = minute_index(windows.now)
    reset = _duration((1.0 - into) * MINUTE)
    if config.rpm is not None:
        used = sliding(windows.requests, windows.requests_before, into)
        out["x-ratelimit-limit-requests"] = str(config.rpm)
        out["x-ratelimit-remaining-requests"] = str(max(0, math.floor(config.rpm - used)))
        out["x-ratelimit-reset-requests"] = reset
    if config.tpm is not None:
        used = sliding(windows.tokens, windows.tokens_before, into)
        out["x-ratelimit-limit-tokens"] = str(config.tpm)
        out["x-ratelimit-remaining-tokens"] = str(max(0, math.floor(config.tpm - used)))
        out["x-ratelimit-reset-tokens"] = reset
    return out


def _duration(seconds: float) -> str:
    """OpenAI's reset format: "1s", "6m0s", "2h3m4s"."""
    total = max(0, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def nanos(amount_usd: float) -> int:
    return round(amount_usd * NANOS_PER_USD)


def usd(amount_nanos: int) -> float:
    return amount_nanos / NANOS_PER_USD


def usage_report(
    key: GatewayKey, windows: Windows, by_model: dict[str, int] | None = None
) -> dict[str, Any]:
    config = key.config
    _, into = minute_index(windows.now)
    _, left = period_index(windows.now, config.budget_seconds)
    cap = config.max_spend
    return {
        "key": key.name,
        "requests_last_minute": round(sliding(windows.requests, windows.requests_before, into)),
        "tokens_last_minute": round(sliding(windows.tokens, windows.tokens_before, into)),
        "in_flight": windows.in_flight,
        "budget": config.budget,
        "budget_period": config.budget_period,
        "budget_spent": windows.spent,
        "budget_left": None if config.budget is None else max(0, config.budget - windows.spent),
        "budget_resets_in_seconds": round(left),
        "max_spend_usd": cap,
        "spend_usd": usd(windows.money),
        "spend_held_usd": usd(windows.held),  # reserved by the requests in flight
        "spend_left_usd": None if cap is None else usd(max(0, nanos(cap) - windows.money)),
        # Requests whose cost was unknown (no usage, or no price: a key without max_spend):
        # not in spend_usd but for what a key with max_spend reserved for them.
        "unpriced_requests": windows.unpriced,
        "spend_by_model": {
            model: usd(spent) for model, spent in sorted((by_model or {}).items()) if spent
        },
        "limits": {"rpm": config.rpm, "tpm": config.tpm, "max_parallel": config.max_parallel},
    }


class _Counters:
    __slots__ = (
        "budget",
        "budget_period",
        "by_model",
        "held",
        "in_flight",
        "minute",
        "money",
        "requests",
        "tokens",
        "unpriced",
    )

    def __init__(self) -> None:
        self.minute = 0
        self.requests = [0, 0]  # [this minute, the one before]
        self.tokens = [0, 0]
        self.budget_period = 0
        self.budget = 0
        self.money = 0  # nano-USD this budget period
        self.by_model: dict[str, int] = {}
        self.held = 0  # nano-USD reserved by the requests in flight
        self.unpriced = 0
        self.in_flight = 0

    def roll(self, now: float, budget_seconds: int) -> None:
        minute, _ = minute_index(now)
        if minute != self.minute:
            gap = minute - self.minute
            self.requests = [0, self.requests[0] if gap == 1 else 0]
            self.tokens = [0, self.tokens[0] if gap == 1 else 0]
            self.minute = minute
        period, _ = period_index(now, budget_seconds)
        if period != self.budget_period:
            self.budget_period, self.budget, self.money, self.unpriced = period, 0, 0, 0
            self.by_model = {}

    def windows(self, now: float) -> Windows:
        return Windows(
            now,
            self.requests[0],
            self.requests[1],
            self.tokens[0],
            self.tokens[1],
            self.budget,
            self.in_flight,
            self.money,
            self.held,
            self.unpriced,
        )


class LocalLimiter:
    """The counters in this process: right for one gateway process."""

    def __init__(self) -> None:
        self._counters: dict[str, _Counters] = {}

    def _of(self, key: GatewayKey, now: float) -> _Counters:
        counters = self._counters.get(key.name)
        if counters is None:
            counters = self._counters[key.name] = _Counters()
        counters.roll(now, key.config.budget_seconds)
        return counters

    async def admit(self, key: GatewayKey, reserve: int = 0) -> Admission:
        now = time.time()
        counters = self._of(key, now)
        check(key, counters.windows(now))
        counters.requests[0] += 1
        counters.in_flight += 1
        counters.held += reserve
        return Admission(key, "", headers(key, counters.windows(now)), reserved=reserve)

    def settle(self, admission: Admission, tokens: int, spent: Spent = NOTHING) -> None:
        now = time.time()
        counters = self._of(admission.key, now)
        counters.in_flight = max(0, counters.in_flight - 1)
        counters.tokens[0] += tokens
        counters.budget += tokens
        counters.held = max(0, counters.held - admission.reserved)
        counters.unpriced += spent.nanos is None
        cost = charged(admission, spent)
        if cost:
            counters.money += cost
            counters.by_model[spent.model] = counters.by_model.get(spent.model, 0) + cost

    async def usage(self, key: GatewayKey) -> dict[str, Any]:
        now = time.time()
        counters = self._of(key, now)
        return usage_report(key, counters.windows(now), counters.by_model)


def charged(admission: Admission, spent: Spent) -> int:
    """The nano-USD a settled request adds to its key's spend: its cost, or, unknown, all it
    reserved (never nothing)."""
    return admission.reserved if spent.nanos is None else spent.nanos
