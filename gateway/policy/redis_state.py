"""Limits and cooldowns in Redis, shared by every gateway process and machine.

Each check is one round trip: a Lua script reads a key's counters, decides and counts the
request atomically, so two instances can never both take the last request of a limit. Each
settlement is one pipelined round trip after the request. Every key the gateway writes
expires, so nothing grows without bound. One Redis server is meant (the client is not a
cluster client, and the cooldown reads span many keys): not Redis Cluster. The commands of
concurrent requests share a few connections (gateway.policy.redis_link).

A request in flight is a lease, not a record: its mark in the key's in-flight set expires
`[state] in_flight_lease` seconds after it was last renewed, and each gateway process renews
all of its own marks in one pipeline every third of a lease. A process that dies (kill -9, a
lost machine) renews nothing, so its requests stop counting against `max_parallel` within a
lease, while a request that streams for an hour keeps its slot.

A Redis that is down or slow never hangs a request: every round trip is bounded by
`[state] timeout`, then `on_redis_error` decides: "open" serves without limits (with a
warning at most every 10 s), "closed" answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Collection
from typing import Any

from gateway.engine.ports import Rest
from gateway.policy.cooldowns import forget_oldest
from gateway.policy.keys import GatewayKey
from gateway.policy.limits import (
    MINUTE,
    Admission,
    LimitsUnavailable,
    Windows,
    check,
    headers,
    minute_index,
    period_index,
    usage_report,
)
from gateway.policy.redis_link import Arg, Command, RedisLink, Script

# Check and count in one step, so that two instances never both take a limit's last request.
# KEYS: requests this minute, the minute before, tokens this minute, the minute before, the
# budget period's spent tokens, the in-flight set. ARGV: now, request id, rpm, tpm, budget,
# max_parallel (0: none), the minute's progress (0..1), the lease in seconds. An in-flight
# mark's score is when its lease ends: the marks whose lease ended are dropped first.
# Returns {admitted (1/0), the counters before this request}: the gateway then names the
# limit and computes the headers from the same numbers (gateway.policy.limits.check).
_ADMIT = """
local now = tonumber(ARGV[1])
local rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4])
local budget, par = tonumber(ARGV[5]), tonumber(ARGV[6])
local into, lease = tonumber(ARGV[7]), tonumber(ARGV[8])
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
local function count(key) return tonumber(redis.call('GET', key) or '0') end
local r, rb, t, tb = count(KEYS[1]), count(KEYS[2]), count(KEYS[3]), count(KEYS[4])
local spent = count(KEYS[5])
local flying = redis.call('ZCARD', KEYS[6])
local counts = {r, rb, t, tb, spent, flying}
if budget > 0 and spent >= budget then return {0, counts} end
if par > 0 and flying >= par then return {0, counts} end
if rpm > 0 and rb * (1 - into) + r + 1 > rpm then return {0, counts} end
if tpm > 0 and tb * (1 - into) + t >= tpm then return {0, counts} end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 120)
redis.call('ZADD', KEYS[6], now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[6], math.ceil(2 * lease * 1000))
return {1, counts}
"""

# Cooldowns. rest: KEYS[1] the rest; ARGV: now, seconds. A longer rest already set is kept.
_REST = """
local now, seconds = tonumber(ARGV[1]), tonumber(ARGV[2])
local current = redis.call('GET', KEYS[1])
local since = now
if current then
  local sep = string.find(current, ':')
  local until_ = tonumber(string.sub(current, sep + 1))
  if until_ >= now + seconds then return 0 end
  since = tonumber(string.sub(current, 1, sep - 1))
end
local value = string.format('%.3f:%.3f', since, now + seconds)
redis.call('SET', KEYS[1], value, 'PX', math.ceil(seconds * 1000))
return 1
"""

# failed: KEYS[1] the failure count, KEYS[2] the rest; ARGV: now, threshold, seconds.
_FAILED = """
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], math.max(1, math.ceil(tonumber(ARGV[3]))))
if count < tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
local now, seconds = tonumber(ARGV[1]), tonumber(ARGV[3])
local value = string.format('%.3f:%.3f', now, now + seconds)
redis.call('SET', KEYS[2], value, 'PX', math.ceil(seconds * 1000))
return 1
"""


# Settlements wait at most this long to go out together.
_SETTLE_EVERY = 0.01
_SETTLE_AGAIN_AFTER = 1.0  # seconds before in-flight marks whose removal failed are sent again
_RENEWALS_PER_LEASE = 3  # a lease survives two renewals lost to a Redis blip


class _Settlements:
    """Token charges (per Redis key: tokens, expiry) and ended requests, not yet sent."""

    __slots__ = ("landed", "tokens")

    def __init__(self) -> None:
        self.tokens: dict[str, tuple[int, int]] = {}
        self.landed: dict[str, list[str]] = {}  # in-flight set -> request ids that ended

    def commands(self) -> list[Command]:
        out = []
        for name, (tokens, ttl) in self.tokens.items():
            out += [Command(("INCRBY", name, tokens)), Command(("EXPIRE", name, ttl))]
        out += [Command(("ZREM", name, *ids)) for name, ids in self.landed.items()]
        return out


class RedisLimiter:
    def __init__(self, link: RedisLink, lease: float) -> None:
        self._link = link
        self._admit = Script(_ADMIT)
        self._lease = lease
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = _Settlements()
        self._flush: asyncio.TimerHandle | None = None
        # This process's marks in flight, per in-flight set: what its renewals push out.
        self._flying: dict[str, set[str]] = {}
        self._renewing: asyncio.Task[None] | None = None

    def _keys(self, key: GatewayKey, now: float) -> list[str]:
        base = f"{self._link.prefix}{{{key.name}}}:"
        minute, _ = minute_index(now)
        period, _ = period_index(now, key.config.budget_seconds)
        return [
            f"{base}requests:{minute}",
            f"{base}requests:{minute - 1}",
            f"{base}tokens:{minute}",
            f"{base}tokens:{minute - 1}",
            f"{base}spent:{key.config.budget_period}:{period}",
            f"{base}in_flight",
        ]

    async def admit(self, key: GatewayKey) -> Admission:
        now = time.time()
        request_id = os.urandom(8).hex()  # its mark in the key's in-flight set
        config = key.config
        _, into = minute_index(now)
        args: list[Arg] = [
            f"{now:.6f}",
            request_id,
            config.rpm or 0,
            config.tpm or 0,
            config.budget or 0,
            config.max_parallel or 0,
            f"{into:.6f}",
            self._lease,
        ]
        keys = self._keys(key, now)
        link = self._link
        check_sent = link.submit(self._admit(keys, args))
        try:
            replies = await link.call(lambda: asyncio.shield(check_sent), "limit check")
        except asyncio.CancelledError:
            # The client left while its check was out: once the check is answered, a mark
            # that landed is taken back (rather than held until its lease ends).
            check_sent.add_done_callback(lambda _: self._take_back(key, request_id, check_sent))
            raise
        if replies is None:
            return Admission(key, request_id, {}, counted=False)
        admitted, counts = replies[0]
        windows = Windows(now, *(int(c) for c in counts))
        if not admitted:
            check(key, windows)  # raises the error that names the limit
        self._flying.setdefault(keys[5], set()).add(request_id)
        if self._renewing is None:
            self._renewing = asyncio.get_running_loop().create_task(self._renew())
        windows.requests += 1
        windows.in_flight += 1
        return Admission(key, request_id, headers(key, windows))

    def _take_back(self, key: GatewayKey, request_id: str, check: asyncio.Future[Any]) -> None:
        if check.cancelled() or check.exception() is not None:
            return  # not sent, or failed: no mark (or one that ends with its lease)
        admitted, _ = check.result()[0]
        if admitted:
            self.settle(Admission(key, request_id, {}, counted=False), 0)

    def settle(self, admission: Admission, tokens: int) -> None:
        """Charged within `_SETTLE_EVERY`: the settlements of that moment go in one pipeline
        (at load, one round trip for many requests instead of one each: the Redis client's
        own CPU per command was the largest cost of shared limits)."""
        keys = self._keys(admission.key, time.time())
        pending = self._pending
        # Not counted: the admit failed, yet its mark may have landed; removing it is
        # harmless either way (and unrenewed, it would end with its lease).
        if tokens and admission.counted:
            budget_ttl = admission.key.config.budget_seconds + 86400
            for name, ttl in ((keys[2], 2 * MINUTE), (keys[4], budget_ttl)):
                charged, _ = pending.tokens.get(name, (0, ttl))
                pending.tokens[name] = (charged + tokens, ttl)
        pending.landed.setdefault(keys[5], []).append(admission.id)
        flying = self._flying.get(keys[5])
        if flying is not None:
            flying.discard(admission.id)
            if not flying:
                del self._flying[keys[5]]
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(_SETTLE_EVERY, self._send)

    def _send(self) -> None:
        self._flush = None
        pending, self._pending = self._pending, _Settlements()
        task = asyncio.get_running_loop().create_task(self._charge(pending))
        self._tasks.add(task)  # held until done: a task nobody references may vanish
        task.add_done_callback(self._tasks.discard)

    async def _charge(self, pending: _Settlements, again: bool = True) -> None:
        commands = pending.commands()
        link = self._link
        with contextlib.suppress(LimitsUnavailable):  # nobody to tell: the answers went out
            if await link.call(lambda: link.run(*commands), "charging tokens"):
                return
        if again and pending.landed:
            # The in-flight marks are taken back once more a little later (a mark removed
            # twice is harmless; tokens are not sent twice: the first INCRBY may have landed).
            await asyncio.sleep(_SETTLE_AGAIN_AFTER)
            retry = _Settlements()
            retry.landed = pending.landed
            await self._charge(retry, again=False)

    async def _renew(self) -> None:
        """Every third of a lease, the leases this process holds are renewed."""
        while True:
            await asyncio.sleep(self._lease / _RENEWALS_PER_LEASE)
            if self._flying:
                await self._renew_once()

    async def _renew_once(self) -> None:
        """One pipeline moves the end of each of this process's leases one lease ahead (XX:
        a mark already taken back is not put back)."""
        ends = f"{time.time() + self._lease:.6f}"
        ttl_ms = math.ceil(2 * self._lease * 1000)
        commands = []
        for name, ids in self._flying.items():
            scored = (value for id in ids for value in (ends, id))
            commands += [Command(("ZADD", name, "XX", *scored)), Command(("PEXPIRE", name, ttl_ms))]
        link = self._link
        await link.call(lambda: link.run(*commands), "renewing leases", limits=False)

    async def close(self) -> None:
        """Send what is pending now (the process is stopping)."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
            self._renewing = None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
            await self._charge(self._pending)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self._link.timeout * 2)

    async def usage(self, key: GatewayKey) -> dict[str, Any]:
        now = time.time()
        keys = self._keys(key, now)
        link = self._link
        reads = [Command(("GET", name)) for name in keys[:5]]
        reads.append(Command(("ZCOUNT", keys[5], f"({now:.6f}", "+inf")))  # leases running
        counts = await link.call(lambda: link.run(*reads), "usage")
        values = [int(c or 0) for c in counts] if counts else [0] * 6
        return usage_report(key, Windows(now, *values))


class RedisCooldowns:
    """The cooldowns store in Redis: a key rested by one instance is skipped by all."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._rest = Script(_REST)
        self._failed = Script(_FAILED)
        # Targets this process saw fail lately: only those need their count reset on success.
        self._failing: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _rest_key(self, id: str) -> str:
        return f"{self._link.prefix}rest:{id}"

    def _fail_key(self, id: str) -> str:
        return f"{self._link.prefix}failures:{id}"

    async def _run(self, command: Command) -> Any:
        """The reply, or None when Redis failed (without cooldowns, every candidate is tried)."""
        link = self._link
        replies = await link.call(lambda: link.run(command), "cooldowns", limits=False)
        return None if replies is None else replies[0]

    async def resting(self, ids: Collection[str]) -> dict[str, Rest]:
        names = list(ids)
        values = await self._run(Command(("MGET", *(self._rest_key(id) for id in names))))
        now = time.time()
        found = {}
        for id, value in zip(names, values or (), strict=False):
            if value:
                text = value.decode() if isinstance(value, bytes) else value
                since, _, until = text.partition(":")
                if float(until) > now:
                    found[id] = Rest(float(since), float(until))
        return found

    async def rest(self, id: str, seconds: float) -> None:
        now = time.time()
        await self._run(self._rest([self._rest_key(id)], [f"{now:.3f}", seconds]))

    async def failed(self, id: str, threshold: int, seconds: float) -> bool:
        now = time.time()
        forget_oldest(self._failing)  # ids are the clients' too (fallbacks): bounded
        self._failing[id] = now + seconds
        keys = [self._fail_key(id), self._rest_key(id)]
        return bool(await self._run(self._failed(keys, [f"{now:.3f}", threshold, seconds])))

    def succeeded(self, id: str) -> None:
        # Free on the common path: only a target this process saw fail lately is reset, in
        # the background, so a success costs no round trip before the answer.
        until = self._failing.pop(id, None)
        if until is None or until < time.time():
            return
        task = asyncio.get_running_loop().create_task(self._reset(id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reset(self, id: str) -> None:
        await self._run(Command(("DEL", self._fail_key(id))))

    async def close(self) -> None:
        """Let the resets under way finish (the link closes after this)."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self._link.timeout * 2)
