"""The state requests share: limits and cooldowns, in this process or in Redis."""

from __future__ import annotations

from gateway.config import StateConfig
from gateway.cooldowns import Cooldowns, LocalCooldowns
from gateway.limits import Limiter, LocalLimiter
from gateway.redis_state import RedisCooldowns, RedisLimiter, RedisLink


class SharedState:
    """`[state] redis_url` set: Redis, shared by every gateway process; else this process."""

    def __init__(self, config: StateConfig) -> None:
        self.limiter: Limiter
        self.cooldowns: Cooldowns
        if config.redis_url is None:
            self._link = None
            self.limiter = LocalLimiter()
            self.cooldowns = LocalCooldowns()
            return

        self._link = RedisLink(config)
        self.limiter = RedisLimiter(self._link)
        self.cooldowns = RedisCooldowns(self._link)

    async def close(self) -> None:
        if self._link is not None:
            if isinstance(self.limiter, RedisLimiter):
                await self.limiter.close()  # the charges still waiting to go out
            await self._link.close()
