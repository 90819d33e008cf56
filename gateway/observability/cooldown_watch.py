"""`gateway_cooldowns`: how many keys and targets rest now, per provider, read at scrape time.

`WatchedCooldowns` wraps the dispatcher's cooldown store and notes each rest it sets; the
questions asked on every request (`resting`, `succeeded`) go straight to the store, so
watching costs nothing on the request path. In process, that is every rest there is; with
Redis, it is the rests this process set (another instance's rests show in its own metrics).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Iterable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.engine.ports import Cooldowns, Rest

_MAX_ENTRIES = 10_000  # as the stores themselves: request fallbacks may name any target


class WatchedCooldowns:
    """A cooldown store (`gateway.engine.ports.Cooldowns`) that remembers when each id it
    rested wakes up: made empty, then `watching` the store the app plugs into the engine."""

    store: Cooldowns
    resting: Callable[[Collection[str]], Awaitable[dict[str, Rest]]]
    succeeded: Callable[[str], None]

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def watching(self, store: Cooldowns) -> WatchedCooldowns:
        """This watch, in front of `store` (what the engine is given instead of it)."""
        self.store = store
        self.resting = store.resting
        self.succeeded = store.succeeded
        return self

    async def rest(self, id: str, seconds: float) -> None:
        await self.store.rest(id, seconds)
        self._note(id, seconds)

    async def failed(self, id: str, threshold: int, seconds: float) -> bool:
        rested = await self.store.failed(id, threshold, seconds)
        if rested:
            self._note(id, seconds)
        return rested

    def _note(self, id: str, seconds: float) -> None:
        until = time.time() + seconds
        if len(self._until) >= _MAX_ENTRIES:
            self._forget_woken()
        if until > self._until.get(id, 0.0):
            self._until[id] = until

    def _forget_woken(self) -> None:
        now = time.time()
        for id in [id for id, until in self._until.items() if until <= now]:
            del self._until[id]
        if len(self._until) >= _MAX_ENTRIES:  # all still resting: drop the oldest noted
            for id in list(self._until)[: _MAX_ENTRIES // 10]:
                del self._until[id]

    def counts(self) -> dict[tuple[str, str], int]:
        """{(provider, "key" or "target"): how many rest now}. Called from the thread that
        renders /metrics: it reads a copy (made at once, under the GIL) and changes nothing;
        woken entries are forgotten by `_note`, on the loop."""
        now = time.time()
        found: dict[tuple[str, str], int] = {}
        for id, until in self._until.copy().items():
            if until > now:
                entry = _kind(id)
                found[entry] = found.get(entry, 0) + 1
        return found


def _kind(id: str) -> tuple[str, str]:
    """Targets are "provider/model", keys "provider#n" (provider names have no '/')."""
    if "/" in id:
        return id.partition("/")[0], "target"
    return id.rpartition("#")[0] or id, "key"


class CooldownCollector(Collector):
    """The gauge, with a 0 for every configured provider so that its series always exist."""

    def __init__(self, watched: WatchedCooldowns, providers: Iterable[str]) -> None:
        self._watched = watched
        self._providers = tuple(providers)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "gateway_cooldowns",
            "Keys and targets (provider/model) resting now after failures, per provider.",
            labels=("gen_ai_provider_name", "kind"),
        )
        counts = dict.fromkeys(((p, k) for p in self._providers for k in ("key", "target")), 0)
        counts.update(self._watched.counts())
        for (provider, kind), count in sorted(counts.items()):
            gauge.add_metric((provider, kind), count)
        yield gauge
