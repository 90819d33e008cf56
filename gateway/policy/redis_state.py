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
    NOTHING,
    Admission,
    LimitsUnavailable,
    Spent,
    UsageUnavailable,
    Windows,
    charged,
    check,
    headers,
    minute_index,
    nanos,
    period_index,
    usage_report,
)
from gateway.policy.redis_link import Arg, Command, RedisFailed, RedisLink, Script

# Check and count in one step, so that two instances never both take a limit's last request.
# KEYS: requests this minute, the minute before, tokens this minute, the minute before, the
# budget period's spent tokens, the in-flight set, the budget period's spent nano-USD, the
# reservations held (request id -> nano-USD), their sum. ARGV: now, request id, rpm, tpm,
# budget, max_parallel, max_spend in nano-USD (0: none), the minute's progress (0..1), the
# lease in seconds, this request's reservation in nano-USD. An in-flight mark's score is when
# its lease ends: the marks whose lease ended are dropped first, and their reservations with
# them (a dead process's requests hold nothing past their lease).
# Returns {admitted (1/0), the counters before this request}: the gateway then names the
# limit and computes the headers from the same numbers (gateway.policy.limits.check).
_ADMIT = """
local now = tonumber(ARGV[1])
local rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4])
local budget, par, spend = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local into, lease, reserve = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local ended = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now)
if #ended > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
  local freed = 0
  for _, id in ipairs(ended) do
    local held = redis.call('HGET', KEYS[8], id)
    if held then
      redis.call('HDEL', KEYS[8], id)
      freed = freed + tonumber(held)
    end
  end
  if freed > 0 then redis.call('DECRBY', KEYS[9], freed) end
end
local function count(key) return tonumber(redis.call('GET', key) or '0') end
local r, rb, t, tb = count(KEYS[1]), count(KEYS[2]), count(KEYS[3]), count(KEYS[4])
local spent, money, held = count(KEYS[5]), count(KEYS[7]), count(KEYS[9])
local flying = redis.call('ZCARD', KEYS[6])
local counts = {r, rb, t, tb, spent, flying, money, held}
if budget > 0 and spent >= budget then return {0, counts} end
if spend > 0 and money + held >= spend then return {0, counts} end
if par > 0 and flying >= par then return {0, counts} end
if rpm > 0 and rb * (1 - into) + r + 1 > rpm then return {0, counts} end
if tpm > 0 and tb * (1 - into) + t >= tpm then return {0, counts} end
local ttl = math.ceil(2 * lease * 1000)
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 120)
redis.call('ZADD', KEYS[6], now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[6], ttl)
if reserve > 0 then
  redis.call('HSET', KEYS[8], ARGV[2], reserve)
  redis.call('INCRBY', KEYS[9], reserve)
  redis.call('PEXPIRE', KEYS[8], ttl)
  redis.call('PEXPIRE', KEYS[9], ttl)
end
return {1, counts}
"""

# Reservations given back (a request settled). KEYS: the reservations held, their sum; ARGV:
# request ids. By id, so giving one back twice (a retried settlement, a lease that ended
# meanwhile) frees it once.
_RELEASE = """
local freed = 0
for _, id in ipairs(ARGV) do
  local held = redis.call('HGET', KEYS[1], id)
  if held then
    redis.call('HDEL', KEYS[1], id)
    freed = freed + tonumber(held)
  end
end
if freed > 0 then redis.call('DECRBY', KEYS[2], freed) end
return freed
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


# The Redis keys (under a gateway key's own prefix) of what it has in flight.
_IN_FLIGHT = "in_flight"
_HELD = "held_nanos"  # request id -> nano-USD reserved
_HELD_SUM = "held_nanos_sum"

# Settlements wait at most this long to go out together.
_SETTLE_EVERY = 0.01
_SETTLE_AGAIN_AFTER = 1.0  # seconds before in-flight marks whose removal failed are sent again
_RENEWALS_PER_LEASE = 3  # a lease survives two renewals lost to a Redis blip


class _Settlements:
    """Charges (per Redis key: tokens or nano-USD, expiry; spend per model), reservations
    given back and ended requests, not yet sent."""

    __slots__ = ("by_model", "landed", "released", "tokens")

    def __init__(self) -> None:
        self.tokens: dict[str, tuple[int, int]] = {}  # also the nano-USD spent
        self.by_model: dict[str, tuple[dict[str, int], int]] = {}  # hash -> (model: nanos), ttl
        self.landed: dict[str, list[str]] = {}  # in-flight set -> request ids that ended
        self.released: dict[tuple[str, str], list[str]] = {}  # (held, their sum) -> ids

    def charge(self, name: str, amount: int, ttl: int) -> None:
        charged, _ = self.tokens.get(name, (0, ttl))
        self.tokens[name] = (charged + amount, ttl)

    def commands(self, release: Script) -> list[Command]:
        out = []
        for name, (amount, ttl) in self.tokens.items():
            out += [Command(("INCRBY", name, amount)), Command(("EXPIRE", name, ttl))]
        for name, (models, ttl) in self.by_model.items():
            out += [Command(("HINCRBY", name, model, n)) for model, n in models.items()]
            out.append(Command(("EXPIRE", name, ttl)))
        out += [release(list(names), ids) for names, ids in self.released.items()]
        out += [Command(("ZREM", name, *ids)) for name, ids in self.landed.items()]
        return out


class RedisLimiter:
    def __init__(self, link: RedisLink, lease: float) -> None:
        self._link = link
        self._admit = Script(_ADMIT)
        self._release = Script(_RELEASE)
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
        budget = f"{key.config.budget_period}:{period}"
        return [
            f"{base}requests:{minute}",
            f"{base}requests:{minute - 1}",
            f"{base}tokens:{minute}",
            f"{base}tokens:{minute - 1}",
            f"{base}spent:{budget}",
            f"{base}{_IN_FLIGHT}",
            f"{base}spent_nanos:{budget}",
            f"{base}{_HELD}",
            f"{base}{_HELD_SUM}",
            f"{base}spent_nanos_by_model:{budget}",  # not the script's
            f"{base}unpriced:{budget}",
        ]

    async def admit(self, key: GatewayKey, reserve: int = 0) -> Admission:
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
            0 if config.max_spend is None else nanos(config.max_spend),
            f"{into:.6f}",
            self._lease,
            reserve,
        ]
        keys = self._keys(key, now)
        link = self._link
        check_sent = link.submit(self._admit(keys[:9], args))
        try:
            replies = await link.call(lambda: asyncio.shield(check_sent), "limit check")
        except asyncio.CancelledError:
            # The client left while its check was out: once the check is answered, a mark
            # (and a reservation) that landed is taken back (rather than held until its
            # lease ends).
            check_sent.add_done_callback(
                lambda _: self._take_back(key, request_id, reserve, check_sent)
            )
            raise
        if replies is None:
            # Its reservation may have landed, the answer lost: given back at settle.
            return Admission(key, request_id, {}, counted=False, reserved=reserve)
        admitted, counts = replies[0]
        windows = Windows(now, *(int(c) for c in counts))
        if not admitted:
            check(key, windows)  # raises the error that names the limit
        self._flying.setdefault(keys[5], set()).add(request_id)
        if self._renewing is None:
            self._renewing = asyncio.get_running_loop().create_task(self._renew())
        windows.requests += 1
        windows.in_flight += 1
        windows.held += reserve
        return Admission(key, request_id, headers(key, windows), reserved=reserve)

    def _take_back(
        self, key: GatewayKey, request_id: str, reserve: int, check: asyncio.Future[Any]
    ) -> None:
        if check.cancelled() or check.exception() is not None:
            return  # not sent, or failed: no mark (or one that ends with its lease)
        admitted, _ = check.result()[0]
        if admitted:
            self.settle(Admission(key, request_id, {}, counted=False, reserved=reserve), 0)

    def settle(self, admission: Admission, tokens: int, spent: Spent = NOTHING) -> None:
        """Charged within `_SETTLE_EVERY`: the settlements of that moment go in one pipeline
        (at load, one round trip for many requests instead of one each: the Redis client's
        own CPU per command was the largest cost of shared limits)."""
        keys = self._keys(admission.key, time.time())
        pending = self._pending
        budget_ttl = admission.key.config.budget_seconds + 86400
        # Not counted: the admit failed, yet its mark may have landed; removing it is
        # harmless either way (and unrenewed, it would end with its lease).
        if tokens and admission.counted:
            pending.charge(keys[2], tokens, 2 * MINUTE)
            pending.charge(keys[4], tokens, budget_ttl)
        # Money is charged even uncounted: what the provider billed is spent all the same.
        if spent.nanos is None:
            pending.charge(keys[10], 1, budget_ttl)
        cost = charged(admission, spent)
        if cost:
            pending.charge(keys[6], cost, budget_ttl)
            models, _ = pending.by_model.setdefault(keys[9], ({}, budget_ttl))
            models[spent.model] = models.get(spent.model, 0) + cost
        if admission.reserved:
            pending.released.setdefault((keys[7], keys[8]), []).append(admission.id)
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
        commands = pending.commands(self._release)
        link = self._link
        with contextlib.suppress(LimitsUnavailable):  # nobody to tell: the answers went out
            if await link.call(lambda: link.run(*commands), "charging tokens"):
                return
        if again and (pending.landed or pending.released):
            # The in-flight marks and reservations are taken back once more a little later
            # (given back twice, each is freed once; tokens and money are not sent twice: the
            # first INCRBY may have landed).
            await asyncio.sleep(_SETTLE_AGAIN_AFTER)
            retry = _Settlements()
            retry.landed = pending.landed
            retry.released = pending.released
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
            # The reservations live as long as the marks (a no-op for a key with none).
            base = name.removesuffix(_IN_FLIGHT)
            commands += [Command(("PEXPIRE", base + held, ttl_ms)) for held in (_HELD, _HELD_SUM)]
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
        reads += [Command(("GET", name)) for name in (keys[6], keys[8], keys[10])]
        reads.append(Command(("HGETALL", keys[9])))
        try:
            replies = await link.run(*reads)
        except RedisFailed as failed:
            raise UsageUnavailable(
                f"The keys' usage lives in Redis ([state] redis_url), which cannot be read "
                f"now ({failed}); try again shortly."
            ) from None
        *counts, by_model = replies
        values = [int(c or 0) for c in counts]
        return usage_report(key, Windows(now, *values), _by_model(by_model))


def _by_model(reply: Any) -> dict[str, int]:
    """HGETALL's reply (a flat list with RESP2, a dict with RESP3) as {model: nano-USD}."""
    if isinstance(reply, dict):
        pairs = list(reply.items())
    else:
        pairs = list(zip(reply[::2], reply[1::2], strict=True))
    return {
        (name.decode() if isinstance(name, bytes) else str(name)): int(value)
        for name, value in pairs
    }


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
