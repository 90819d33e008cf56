"""A request's gateway key and its limits, as the engine asks for them (its `Limits` port).

The key was found by the auth middleware (`gateway.policy.keys`); the limiter keeps the
counters, in this process or in Redis (`gateway.policy.limits`, `gateway.policy.redis_state`).
A request is admitted before any upstream is called and settled once it ended, charged every
token its answer used.
"""

from __future__ import annotations

from aiohttp import web

from gateway.policy.keys import CLIENT_KEY, GATEWAY_KEY, GatewayKey
from gateway.policy.limits import Admission, Limiter
from wire.usage import Usage


class KeyLimits:
    """`gateway.engine.ports.Limits`, for gateway keys and one limiter."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    def caller(self, request: web.Request) -> GatewayKey | None:
        return request.get(GATEWAY_KEY)

    def client_key(self, request: web.Request) -> str | None:
        return request.get(CLIENT_KEY)

    async def admit(self, request: web.Request) -> Admission:
        return await self.limiter.admit(request[GATEWAY_KEY])

    def rate_headers(self, admission: Admission) -> dict[str, str]:
        return admission.headers

    def settle(self, admission: Admission, usage: Usage | None) -> None:
        self.limiter.settle(admission, usage.total if usage is not None else 0)


def key_name(request: web.Request) -> str | None:
    """The name of the request's gateway key, if it presented one (for the access log)."""
    key = request.get(GATEWAY_KEY)
    return key.name if key is not None else None
