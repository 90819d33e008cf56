"""Where answers are kept: this process's memory (bounded by bytes, least recently used out
first), or the `[state]` Redis, shared by every instance and worker.

Both take the keys of every candidate at once and answer the first that is stored. Redis is
asked in one round trip (MGET), bounded by `[state] timeout` (`gateway.policy.redis_link`):
down or slow, the lookup is a miss and the fill is dropped, never an error and never a longer
wait. An entry expires after `[cache] ttl` in both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from gateway.policy.redis_link import Command, RedisFailed, RedisLink

log = logging.getLogger("gateway")

# What an entry costs beyond its key's and its answer's bytes: the dict's slot and node, the
# key's str and the answer's bytes headers, the (answer, expiry) tuple and its float.
ENTRY_OVERHEAD = 256


class Store(Protocol):
    async def first(self, keys: Sequence[str]) -> tuple[int, bytes] | None:
        """The first of `keys` that holds an answer: its position and the answer."""
        ...

    def put(self, key: str, answer: bytes) -> None:
        """Keep `answer` under `key` for the ttl (in the background, for Redis)."""
        ...


class MemoryStore:
    """This process's entries, least recently used first, at most `max_bytes` in all."""

    def __init__(
        self, max_bytes: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.bytes = 0  # what the entries take, overhead included
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def first(self, keys: Sequence[str]) -> tuple[int, bytes] | None:
        now = self._clock()
        for position, key in enumerate(keys):
            entry = self._entries.get(key)
            if entry is None:
                continue
            answer, expires = entry
            if expires <= now:
                self._drop(key)
                continue
            self._entries.move_to_end(key)
            return position, answer
        return None

    def put(self, key: str, answer: bytes) -> None:
        size = _size(key, answer)
        if size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (answer, self._clock() + self.ttl)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        answer, _ = self._entries.pop(key)
        self.bytes -= _size(key, answer)


def _size(key: str, answer: bytes) -> int:
    return len(key) + len(answer) + ENTRY_OVERHEAD


class RedisStore:
    """The entries in Redis, under `[state] prefix` + "cache:", each with its ttl."""

    def __init__(self, link: RedisLink, ttl: float) -> None:
        self._link = link
        self._prefix = f"{link.prefix}cache:"
        self._ttl_ms = max(1, round(ttl * 1000))

    async def first(self, keys: Sequence[str]) -> tuple[int, bytes] | None:
        command = Command(("MGET", *(self._prefix + key for key in keys)))
        try:
            (answers,) = await self._link.run(command)
        except RedisFailed as failed:
            log.debug("cache lookup skipped: %s", failed)
            return None
        for position, answer in enumerate(answers or ()):
            if answer is not None:
                return position, answer
        return None

    def put(self, key: str, answer: bytes) -> None:
        command = Command(("SET", self._prefix + key, answer, "PX", self._ttl_ms))
        self._link.submit(command).add_done_callback(_dropped)


def _dropped(future: asyncio.Future[list[Any]]) -> None:
    """A fill Redis did not take is dropped (the next miss fills it again)."""
    exception = None if future.cancelled() else future.exception()
    if exception is not None:
        log.debug("cache fill dropped: %s", exception)
