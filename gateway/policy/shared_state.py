"""The state requests share: limits and cooldowns, in this process or in Redis."""

from __future__ import annotations

from aiohttp import web

from gateway.config import StateConfig
from gateway.engine.ports import Cooldowns
from gateway.policy.cooldowns import LocalCooldowns
from gateway.policy.limits import Limiter, LocalLimiter
from gateway.policy.redis_link import Command, RedisFailed, RedisLink
from gateway.policy.redis_state import RedisCooldowns, RedisLimiter


class SharedState:
    """`[state] redis_url` set: Redis, shared by every gateway process; else this process."""

    def __init__(self, config: StateConfig) -> None:
        self.limiter: Limiter
        self.cooldowns: Cooldowns
        self._redis: tuple[RedisLink, RedisLimiter, RedisCooldowns] | None = None
        if config.redis_url is None:
            self.limiter = LocalLimiter()
            self.cooldowns = LocalCooldowns()
            return
        link = RedisLink(config)
        self._redis = (link, RedisLimiter(link, config.in_flight_lease), RedisCooldowns(link))
        _, self.limiter, self.cooldowns = self._redis

    @property
    def link(self) -> RedisLink | None:
        """The Redis client, when `[state] redis_url` is set (the response cache's too)."""
        return self._redis[0] if self._redis is not None else None

    @property
    def fails_closed(self) -> bool:
        """Redis is configured with `on_redis_error = "closed"`: requests need it."""
        return self._redis is not None and not self._redis[0].fail_open

    async def unreachable(self) -> str | None:
        """Why Redis cannot be reached now (one PING, bounded by `[state] timeout`); None when
        it answers, or when no Redis is configured."""
        if self._redis is None:
            return None
        try:
            await self._redis[0].run(Command(("PING",)))
        except RedisFailed as failed:
            return str(failed) or type(failed).__name__
        return None

    async def close(self) -> None:
        if self._redis is not None:
            link, limiter, cooldowns = self._redis
            await limiter.close()  # the charges still waiting to go out
            await cooldowns.close()
            await link.close()


STATE = web.AppKey("state", SharedState)
