"""The response cache `[cache]` asks for, on its backend; None when it is off."""

from __future__ import annotations

from gateway.cache.response_cache import ResponseCache
from gateway.cache.stores import MemoryStore, RedisStore, Store
from gateway.config import CacheConfig
from gateway.policy.pricing import Prices
from gateway.policy.shared_state import SharedState


def response_cache(config: CacheConfig, state: SharedState, prices: Prices) -> ResponseCache | None:
    if not config.enabled:
        return None
    store: Store
    if config.backend == "redis":
        assert state.link is not None  # checked with the config
        store = RedisStore(state.link, config.ttl)
    else:
        store = MemoryStore(config.max_bytes, config.ttl)
    return ResponseCache(config, store, prices)
