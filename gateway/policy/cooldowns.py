"""Which keys and targets are resting, shared by every request of this gateway.

A key the upstream refused (401/403, 429) rests so that other requests stop spending their
first attempt on it; a target (`provider/model`) that failed several times in a row rests
for the cooldown. The dispatcher asks one question per request (`resting`) and reports what
it saw, through the engine's `Cooldowns` port (`gateway.engine.ports`), so that several
gateway instances can share the state (`gateway.policy.redis_state` keeps it in Redis).

Times are wall-clock seconds (`time.time()`): they are compared across processes.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import TypeVar

from gateway.engine.ports import Rest

# Ids come from the config (keys, alias targets) and from requests (`fallbacks` name any
# provider/model): past this many entries, the oldest are forgotten.
_MAX_ENTRIES = 10_000


class LocalCooldowns:
    """In process memory: right for one gateway process."""

    def __init__(self) -> None:
        self._rests: dict[str, Rest] = {}
        self._failures: dict[str, int] = {}

    async def resting(self, ids: Collection[str]) -> dict[str, Rest]:
        if not self._rests:
            return {}
        now = time.time()
        found = {}
        for id in ids:
            rest = self._rests.get(id)
            if rest is None:
                continue
            if rest.until > now:
                found[id] = rest
            else:
                del self._rests[id]
        return found

    async def rest(self, id: str, seconds: float) -> None:
        now = time.time()
        current = self._rests.get(id)
        if current is not None and current.until >= now + seconds:
            return
        forget_oldest(self._rests)
        # A rest that is still running is extended; one that ended starts again from now.
        since = current.since if current is not None and current.until > now else now
        self._rests[id] = Rest(since, now + seconds)

    async def failed(self, id: str, threshold: int, seconds: float) -> bool:
        count = self._failures.get(id, 0) + 1
        if count >= threshold:
            self._failures.pop(id, None)
            await self.rest(id, seconds)
            return True
        forget_oldest(self._failures)
        self._failures[id] = count
        return False

    def succeeded(self, id: str) -> None:
        if self._failures:
            self._failures.pop(id, None)


V = TypeVar("V")


def forget_oldest(entries: dict[str, V]) -> None:
    """Make room for one more entry: past `_MAX_ENTRIES`, the oldest tenth are forgotten."""
    if len(entries) >= _MAX_ENTRIES:
        for id in list(entries)[: _MAX_ENTRIES // 10]:  # dicts keep insertion order: oldest
            del entries[id]
