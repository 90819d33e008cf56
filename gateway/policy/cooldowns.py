"""Which keys and targets are resting, shared by every request of this gateway.

A key the upstream refused (401/403, 429) rests so that other requests stop spending their
first attempt on it; a target (`provider/model`) that failed several times in a row rests
for the cooldown. The routing asks one question per request (`resting`) and reports what it
saw; the state sits behind this small interface so that several gateway instances can share
it (a Redis-backed store implements the same methods).

Times are wall-clock seconds (`time.time()`): they are compared across processes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Collection
from typing import NamedTuple, Protocol, TypeVar

# Ids come from the config (keys, alias targets) and from requests (`fallbacks` name any
# provider/model): past this many entries, the oldest are forgotten.
_MAX_ENTRIES = 10_000


class Rest(NamedTuple):
    since: float  # when the rest began: of several resting candidates, the longest rested goes
    until: float


class Cooldowns(Protocol):
    # Plain methods returning awaitables: a wrapper may hand on a store's bound coroutine
    # functions as they are (gateway.observability.cooldown_watch).
    def resting(self, ids: Collection[str]) -> Awaitable[dict[str, Rest]]:
        """The rests among `ids` that have not ended yet."""
        ...

    def rest(self, id: str, seconds: float) -> Awaitable[None]:
        """`id` rests for `seconds` from now (a longer rest already running is kept)."""
        ...

    def failed(self, id: str, threshold: int, seconds: float) -> Awaitable[bool]:
        """Count a failure of target `id`; at `threshold` failures in a row it rests for
        `seconds` (and the count starts again). True when it now rests."""
        ...

    def succeeded(self, id: str) -> None:
        """`id` answered: its failures in a row are forgotten. Never waits (asked on every
        request: a store that must talk to a server does so in the background)."""
        ...


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
        _bound(self._rests)
        # A rest that is still running is extended; one that ended starts again from now.
        since = current.since if current is not None and current.until > now else now
        self._rests[id] = Rest(since, now + seconds)

    async def failed(self, id: str, threshold: int, seconds: float) -> bool:
        count = self._failures.get(id, 0) + 1
        if count >= threshold:
            self._failures.pop(id, None)
            await self.rest(id, seconds)
            return True
        _bound(self._failures)
        self._failures[id] = count
        return False

    def succeeded(self, id: str) -> None:
        if self._failures:
            self._failures.pop(id, None)


V = TypeVar("V")


def _bound(entries: dict[str, V]) -> None:
    if len(entries) >= _MAX_ENTRIES:
        for id in list(entries)[: _MAX_ENTRIES // 10]:  # dicts keep insertion order: oldest
            del entries[id]
