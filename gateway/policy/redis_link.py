"""The gateway's one Redis client: a few connections, commands pipelined automatically.

Every request asks Redis one question before it runs (its limit check) and one after it (its
charge), so a gateway serving C requests at once would want C connections if each question
took its own: redis-py's pool refuses past its size (100) at once, and each command pays the
client's full per-call cost. Instead, the commands asked for in the same moment (one turn of
the event loop) go out together as one pipeline, one write and one read of many replies,
the way ioredis' and rueidis' auto-pipelining do. Up to `LANES` pipelines are out at once, each
on its own connection; while all are out, new commands wait for the next free one and go in
its batch, so a burst of any size takes a few round trips and never fails for want of a
connection. Redis runs one command at a time anyway: more connections would not answer sooner.

Every round trip (taking a connection, connecting if need be, the write, the last reply) is
bounded by `[state] timeout` of time the process was free to hear Redis (`_Patience`); a
command waits at most for the pipelines ahead of it, each bounded the same way. A failure is
reported to each waiting caller as `RedisFailed`, and `RedisLink.call` applies
`on_redis_error`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, TypeVar

from gateway.config import StateConfig
from gateway.policy.limits import LimitsUnavailable

log = logging.getLogger("gateway")
T = TypeVar("T")

LANES = 4  # pipelines out at once, one connection each
_WARN_EVERY = 10.0  # seconds between two "Redis is down" warnings

Arg = str | bytes | int | float


class Script:
    """A Lua script, sent by its SHA-1 (EVALSHA) and in full only when Redis lacks it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Command:
        return Command(("EVALSHA", self.sha, len(keys), *keys, *args), self)


class Command(NamedTuple):
    args: tuple[Arg, ...]  # ("INCRBY", "name", 5)
    script: Script | None = None  # an EVALSHA of this script


class RedisFailed(Exception):
    """Redis did not answer a command in time, refused the connection, or answered an error."""


_Waiter = tuple[Sequence[Command], "asyncio.Future[list[Any]]"]


class _Patience:
    """Expires `deadline` once Redis was waited on for `seconds`, counting each turn of the
    event loop as at most a tenth of them: a burst of requests that keeps this process's loop
    busy for a second must not pass for a Redis that took a second to answer (its replies
    would wait unread meanwhile, and every check would fail). With the loop free, the
    deadline is `seconds`; with the loop busy, it is ten turns, in which the replies of a
    Redis that answered are read."""

    __slots__ = ("_deadline", "_handle", "_step", "_ticks")
    _TICKS = 10

    def __init__(self, deadline: asyncio.Timeout, seconds: float) -> None:
        self._deadline = deadline
        self._step = seconds / self._TICKS
        self._ticks = 0
        self._handle = asyncio.get_running_loop().call_later(self._step, self._tick)

    def _tick(self) -> None:
        self._ticks += 1
        loop = asyncio.get_running_loop()
        if self._ticks >= self._TICKS:
            self._deadline.reschedule(loop.time())  # expires at once: TimeoutError
        else:
            self._handle = loop.call_later(self._step, self._tick)

    def stop(self) -> None:
        self._handle.cancel()


class RedisLink:
    """The client, its automatic pipelines, and the outage policy."""

    def __init__(self, config: StateConfig) -> None:
        # Imports only for those who configure Redis.
        import hiredis
        import redis.asyncio as redis

        assert config.redis_url is not None
        # Blocking: a pipeline that finds every connection busy waits for one instead of
        # failing at once (there are never more than LANES anyway). No timeouts of redis-py's
        # own: each round trip, from taking a connection (and connecting) to the last reply,
        # is bounded by `_Patience` (a timer per socket read would also cost CPU per reply).
        pool = redis.BlockingConnectionPool.from_url(
            config.redis_url,
            max_connections=LANES,
            timeout=None,
            socket_timeout=None,
            socket_connect_timeout=None,
            health_check_interval=0,
        )
        self.client = redis.Redis.from_pool(pool)
        self._pack = hiredis.pack_command
        self.prefix = config.prefix
        self.timeout = config.timeout
        self.fail_open = config.on_redis_error == "open"
        self._warned = 0.0
        self._queue: list[_Waiter] = []
        self._free = LANES
        self._flushing = False  # a flush is scheduled for this turn of the loop
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self, *commands: Command) -> list[Any]:
        """The replies to `commands`, sent in the next pipeline; raises RedisFailed."""
        return await self.submit(*commands)

    def submit(self, *commands: Command) -> asyncio.Future[list[Any]]:
        """`commands` go in the next pipeline; the future holds their replies (or RedisFailed).
        Cancelled before that pipeline leaves, they are not sent."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((commands, future))
        self._schedule()
        return future

    async def call(
        self, operation: Callable[[], Awaitable[T]], what: str, *, limits: bool = True
    ) -> T | None:
        """The operation's result; None when Redis failed and the policy is "open" (always,
        for what is no limit: without cooldowns every candidate is simply tried)."""
        try:
            return await operation()
        except RedisFailed as failed:
            now = time.monotonic()
            fail_open = self.fail_open or not limits
            if now - self._warned >= _WARN_EVERY:
                self._warned = now
                policy = "serving without limits" if fail_open else "answering 503"
                log.warning("redis unavailable (%s: %s); %s", what, failed, policy)
            if fail_open:
                return None
            raise LimitsUnavailable(
                "The gateway's shared state is unavailable; try again shortly."
            ) from None

    def _schedule(self) -> None:
        if self._queue and self._free and not self._flushing:
            self._flushing = True  # what else is asked for in this turn joins the batch
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        # A caller that went away (its future cancelled) before its batch left: not sent.
        batch = [waiter for waiter in self._queue if not waiter[1].done()]
        self._queue = []
        if not batch:
            return
        self._free -= 1
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)  # held until done: a task nobody references may vanish
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Waiter]) -> None:
        try:
            commands = [command for waiting, _ in batch for command in waiting]
            try:
                async with asyncio.timeout(None) as deadline:
                    patience = _Patience(deadline, self.timeout)
                    try:
                        replies = await self._pipeline(commands)
                    finally:
                        patience.stop()
            except BaseException as exc:  # a timeout, a refused connection, a broken socket
                for _, future in batch:
                    if not future.done():  # each its own error: no shared traceback
                        future.set_exception(RedisFailed(type(exc).__name__))
                if not isinstance(exc, Exception):
                    raise  # this task was cancelled (the loop is closing): its callers are told
                return
            start = 0
            for waiting, future in batch:
                mine = replies[start : start + len(waiting)]
                start += len(waiting)
                if future.done():
                    continue
                error = next((r for r in mine if isinstance(r, Exception)), None)
                if error is None:
                    future.set_result(mine)
                else:
                    future.set_exception(RedisFailed(f"{type(error).__name__}: {error}"))
        finally:
            self._free += 1
            self._schedule()

    async def _pipeline(self, commands: list[Command]) -> list[Any]:
        from redis.exceptions import NoScriptError

        replies = await self._round_trip([command.args for command in commands])
        # Redis restarted or flushed its scripts: those that did not run go again in full
        # (EVAL also caches them for the next EVALSHA).
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            again = []
            for i in missing:
                args, script = commands[i]
                assert script is not None
                again.append(("EVAL", script.source, *args[2:]))
            for i, reply in zip(missing, await self._round_trip(again), strict=True):
                replies[i] = reply
        return replies

    async def _round_trip(self, commands: list[tuple[Arg, ...]]) -> list[Any]:
        """One write of every command, then their replies in order (an error reply is
        returned, not raised). Packed by hiredis: redis-py's own packing, which checks the
        type of every argument in Python, was most of the client's CPU per admission."""
        from redis.exceptions import ResponseError

        # hiredis' stub types its argument as a 1-tuple.
        packed = b"".join([self._pack(args) for args in commands])  # type: ignore[arg-type]
        pool = self.client.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]  # unannotated
        try:
            await connection.send_packed_command(packed, check_health=False)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as error:  # its reply was read: the rest follow in order
                    replies.append(error)
        except BaseException:
            # Cancelled (the timeout) or broken halfway: replies may still be on the way,
            # so this connection is not handed to the next pipeline.
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)
        return replies

    async def close(self) -> None:
        """Let the pipelines under way finish, then disconnect."""
        if self._sending:
            await asyncio.wait(self._sending, timeout=self.timeout * 2)
        await self.client.aclose()
