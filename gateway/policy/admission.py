"""A request's gateway key and its limits, as the engine asks for them (its `Limits` port).

The key was found by the auth middleware (`gateway.policy.keys`); the limiter keeps the
counters, in this process or in Redis (`gateway.policy.limits`, `gateway.policy.redis_state`).
A request is admitted before any upstream is called and settled once it ended, charged every
token its answer used and, for a key with `max_spend`, what they cost: the record's cost, which
the engine asked `gateway.policy.pricing` for once.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from gateway.engine.call import Call
from gateway.engine.events import RequestRecord
from gateway.engine.targets import Candidate
from gateway.policy.keys import CLIENT_KEY, GATEWAY_KEY, GatewayKey
from gateway.policy.limits import NOTHING, Admission, Limiter, Spent
from gateway.policy.pricing import Prices


class KeyLimits:
    """`gateway.engine.ports.Limits`, for gateway keys and one limiter."""

    def __init__(self, limiter: Limiter, prices: Prices | None = None) -> None:
        self.limiter = limiter
        self.prices = prices

    def caller(self, request: web.Request) -> GatewayKey | None:
        return request.get(GATEWAY_KEY)

    def client_key(self, request: web.Request) -> str | None:
        return request.get(CLIENT_KEY)

    async def admit(self, request: web.Request, call: Call, plan: Sequence[Candidate]) -> Admission:
        key: GatewayKey = request[GATEWAY_KEY]
        reserve = 0  # a key with max_spend holds the request's worst case until it settles
        if self.prices is not None and key.config.max_spend is not None:
            targets = ((c.group.name, c.model) for c in plan)
            reserve = self.prices.reserve(key, call.model, targets, call.operation, call.ask)
        return await self.limiter.admit(key, reserve)

    def rate_headers(self, admission: Admission) -> dict[str, str]:
        return admission.headers

    def settle(self, admission: Admission, record: RequestRecord) -> None:
        if record.cache == "hit":  # answered from the cache: no provider tokens, no cost
            self.limiter.settle(admission, 0, NOTHING)
            return
        usage = record.usage
        self.limiter.settle(admission, usage.total if usage is not None else 0, spent(record))


def spent(record: RequestRecord) -> Spent:
    """The record's cost (priced once by the engine) as the limiter charges it: nothing when
    no upstream answered; unknown (its reservation charged) when it was not priced."""
    if record.served is None:
        return NOTHING
    cost = record.cost
    return Spent(cost.nanos if cost is not None else None, record.served)


def key_name(request: web.Request) -> str | None:
    """The name of the request's gateway key, if it presented one (for the access log)."""
    key = request.get(GATEWAY_KEY)
    return key.name if key is not None else None
