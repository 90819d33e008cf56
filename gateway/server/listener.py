"""The listening socket: connections accepted here, counted, capped, and the accepting watched.

The event loop's own server (uvloop's, through libuv) meets a full file table by accepting and
at once closing connections ("the EMFILE trick"): clients see a reset and nothing is logged.
Accepting here instead, an EMFILE says so in the log (once a minute) and accepting pauses
briefly with a growing delay, as Go's net/http does, so that waiting connections stay queued
in the backlog until a file is free again.

Past `max_connections` open client connections, a new one is answered 503 in OpenAI's shape
and closed, instead of being served at the expense of the others. At most `fdlimit.REFUSALS`
refused connections are held at once (each a file until its 503 is read): past them,
accepting waits for one to end, so refusals never take the files admitted streams need.

Accepting never ends silently: an error is logged and accepting goes on. And a watchdog
checks every accept loop each second: one that ended, or that takes no connection while
connections wait in the listen queue (Linux reports the queue's length), is logged and
restarted. When restarts do not help, the process gives up on its listener: it drains and
exits 1, and its supervisor (`--workers`) or service manager starts a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from gateway.server import fdlimit
from gateway.server.client_connection import ClientLimits, GuardedHandler, raw_response
from gateway.server.log_throttle import Throttled
from wire.errors import ServiceUnavailable

log = logging.getLogger("gateway")

# The accept queue: a burst of a thousand connections waits in it rather than on SYN retries
# (nginx and Node.js ask for 511; Linux caps it at net.core.somaxconn, 4,096 by default).
BACKLOG = 1024
# Accept errors that concern one connection only (it went away before it was accepted).
_TRANSIENT = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR})
# After EMFILE: wait 5 ms, doubling to 1 s (Go's http.Server.Serve).
_FIRST_DELAY = 0.005
_MAX_DELAY = 1.0
# How long a refused connection is kept to deliver its 503 before it is closed.
_REFUSAL_LINGER = 1.0
# The watchdog looks every second. A healthy accept loop goes round within a second whenever
# connections wait (an EMFILE pause or a refusal's linger is 1 s at most): one that took
# none for 3 s while they waited is stuck. Three restarts in a row that took no connection
# either, and the process gives up on its listener.
WATCH_INTERVAL = 1.0
STALL_AFTER = 3.0
FUTILE_RESTARTS = 3
# Linux's tcp_info of a listening socket: tcpi_unacked, at this offset, is its queue length.
_QUEUE_OFFSET = 24

_cap_reached = Throttled(log)
_accept_failed = Throttled(log)
_serve_failed = Throttled(log)


class ConnectionCap:
    """The protocol factory: an aiohttp connection while fewer than `limit` are open, else a
    refusal (503)."""

    def __init__(self, runner: web.AppRunner, limit: int, limits: ClientLimits) -> None:
        server = runner.server
        assert server is not None, "runner.setup() comes first"
        self._server = server
        self._limit = limit
        self._limits = limits
        self._kwargs: dict[str, Any] = {
            "loop": asyncio.get_running_loop(),
            "access_log": None,
        }
        self.open = 0
        self._refusals: set[asyncio.Transport] = set()
        self._room = asyncio.Event()  # set when a refusal ends

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self._limit:
            _cap_reached.warning(
                f"{self.open} client connections are open, the limit ([server] "
                "max_connections): new ones are answered 503"
            )
            return _Refusal(self, self._limit)
        self.open += 1
        return GuardedHandler(self._server, self._limits, self._closed, **self._kwargs)

    def _closed(self) -> None:
        self.open -= 1

    async def room(self) -> None:
        """Return once another connection may be accepted: fewer than `fdlimit.REFUSALS`
        refused ones are held."""
        while len(self._refusals) >= fdlimit.REFUSALS:
            self._room.clear()
            await self._room.wait()

    def refusing(self, transport: asyncio.Transport) -> None:
        self._refusals.add(transport)

    def refused(self, transport: asyncio.Transport) -> None:
        self._refusals.discard(transport)
        self._room.set()

    def close(self) -> None:
        for transport in list(self._refusals):
            transport.abort()


class _Refusal(asyncio.Protocol):
    """Answers 503 at once, then closes: the write side first, so that the client reads the
    answer before the connection ends, and all of it within `_REFUSAL_LINGER`. What the
    client sends meanwhile is read and dropped: a socket closed with unread bytes sends a
    reset, which can destroy the answer before the client reads it."""

    def __init__(self, cap: ConnectionCap, limit: int) -> None:
        self._cap = cap
        self._limit = limit
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is no subclass of asyncio.Transport, though it is one in all
        # but name: an isinstance check here failed every refusal under uvloop.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._cap.refusing(transport)
        error = ServiceUnavailable(
            f"The gateway is serving its limit of {self._limit} connections; try again shortly."
        )
        transport.write(raw_response(error))
        with contextlib.suppress(OSError, RuntimeError, NotImplementedError):
            transport.write_eof()
        # Aborted, not closed, when the time is up: a client that does not read cannot keep
        # the file (and a place among the refusals) longer.
        self._timer = asyncio.get_running_loop().call_later(_REFUSAL_LINGER, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass  # the request is not read: it is refused whatever it is

    def eof_received(self) -> bool:
        return False  # the client has read and closed: close too

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._cap.refused(self._transport)


def _waiting(sock: socket.socket) -> int:
    """Connections in `sock`'s listen queue, not yet accepted (0 where the system does not
    say: Linux alone does)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _QUEUE_OFFSET + 4)
    except OSError:
        return 0
    return int(struct.unpack_from("I", info, _QUEUE_OFFSET)[0])


def _address(sock: socket.socket) -> str:
    try:
        host, port = sock.getsockname()[:2]
    except OSError:
        return f"socket {sock.fileno()}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def accept(sock: socket.socket) -> socket.socket:
    """The next connection on `sock`. When cancelled, it has accepted none: the accept is made
    in this task's own step. (uvloop's `sock_accept` accepts in a callback: a cancellation
    that lands between that callback and the task's next step, a drain's or a reload's,
    dropped the connection the kernel had handed over.)"""
    loop = asyncio.get_running_loop()
    while True:
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            pass
        else:
            conn.setblocking(False)
            return conn
        readable: asyncio.Future[None] = loop.create_future()
        loop.add_reader(sock.fileno(), _settle, readable)
        try:
            await readable
        finally:
            if sock.fileno() != -1:  # closed: `Listener.close` removed the reader first
                loop.remove_reader(sock.fileno())


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _AcceptLoop:
    """One listening socket's accept loop, and what the watchdog knows of it."""

    def __init__(self, sock: socket.socket, cap: ConnectionCap) -> None:
        self.sock = sock
        self.address = _address(sock)
        self._cap = cap
        self._turns = 0  # times round the loop, whatever happened there: it is alive
        self._turns_seen = 0
        self._fine_at = asyncio.get_running_loop().time()  # last seen going round or idle
        self.futile_restarts = 0  # restarts since it last accepted a connection
        self.task = asyncio.get_running_loop().create_task(self._run())

    def restart(self) -> None:
        self.task.cancel()
        self.futile_restarts += 1
        self.excuse(asyncio.get_running_loop().time())
        self.task = asyncio.get_running_loop().create_task(self._run())

    def excuse(self, now: float) -> None:
        """Judge the loop from `now` on only (the event loop itself was held up)."""
        self._turns_seen = self._turns
        self._fine_at = now

    def problem(self, now: float) -> str | None:
        """What is wrong with the loop at time `now`, or None."""
        if self.task.done():
            if self.task.cancelled():
                return f"the accept loop on {self.address} was cancelled"
            exc = self.task.exception()
            return f"the accept loop on {self.address} ended" + (f" ({exc!r})" if exc else "")
        waiting = _waiting(self.sock)
        if not waiting or self._turns != self._turns_seen:
            self.excuse(now)
            return None
        if now - self._fine_at < STALL_AFTER:
            return None
        return (
            f"the accept loop on {self.address} took no connection for "
            f"{now - self._fine_at:.0f} s while {waiting} waited"
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = _FIRST_DELAY
        while True:
            self._turns += 1
            await self._cap.room()
            try:
                conn = await accept(self.sock)
            except OSError as exc:
                if exc.errno in _TRANSIENT:
                    continue
                if exc.errno in fdlimit.EXHAUSTED:
                    fdlimit.report_exhaustion("accepting a connection")
                else:  # ENOBUFS, ENOMEM, or worse: never a silent end of accepting
                    _accept_failed.warning(f"accepting a connection failed: {exc.strerror}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
                continue
            except Exception:  # whatever it is, logged, and accepting goes on
                _accept_failed.warning("accepting a connection failed", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
                continue
            delay = _FIRST_DELAY
            self.futile_restarts = 0
            try:
                # Shielded: a drain or reload that stops this loop now still serves the
                # connection it accepted (cancelled midway, it would be dropped).
                await asyncio.shield(loop.connect_accepted_socket(self._cap, conn))
            except Exception as exc:  # one connection's fault never ends accepting
                if not isinstance(exc, OSError):  # OSError: the client left already
                    _serve_failed.warning("serving an accepted connection failed", exc_info=True)
                # The loop may have closed the descriptor already (uvloop does, when the
                # protocol fails): closing it again is EBADF, never an end of accepting.
                with contextlib.suppress(OSError):
                    conn.close()


class Listener:
    """Sockets bound to host:port, each with its accept loop (what `loop.create_server`
    returns, as far as aiohttp's runner needs: `sockets` and `close`), and their watchdog.
    `on_broken` is called when restarting an accept loop does not mend it."""

    def __init__(
        self, sockets: list[socket.socket], cap: ConnectionCap, on_broken: Callable[[], None]
    ) -> None:
        self.sockets = sockets
        self._cap = cap
        self._loops = [_AcceptLoop(sock, cap) for sock in sockets]
        self._adopted: set[asyncio.Task[None]] = set()
        self._on_broken = on_broken
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        woke = loop.time()
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            slept, woke = loop.time() - woke, loop.time()
            if slept > 2 * WATCH_INTERVAL:
                # The event loop was held up (timers run before I/O): the accept loops had
                # no chance to accept either, which is no fault of theirs.
                for accept in self._loops:
                    accept.excuse(woke)
                continue
            for accept in self._loops:
                try:
                    problem = accept.problem(woke)
                except Exception:  # the watchdog itself goes on
                    log.exception("checking the accept loop on %s failed", accept.address)
                    continue
                if problem is None:
                    continue
                if accept.futile_restarts >= FUTILE_RESTARTS:
                    log.error(
                        "%s, after %d restarts that took no connection: this process stops "
                        "taking connections; it drains and exits 1, for its supervisor or "
                        "service manager to start a fresh one",
                        problem,
                        accept.futile_restarts,
                    )
                    self._on_broken()
                    return
                log.error("%s: restarted", problem)
                accept.restart()

    def close(self) -> None:
        self._watchdog.cancel()
        loop = asyncio.get_running_loop()
        for accept in self._loops:
            # Before the socket closes: a duplicate of it (another generation's) keeps it
            # open, and epoll would go on reporting the closed descriptor.
            loop.remove_reader(accept.sock.fileno())
            accept.task.cancel()
            self._adopt_waiting(accept.sock)
        for sock in self.sockets:
            sock.close()

    def _adopt_waiting(self, sock: socket.socket) -> None:
        """Accept the connections waiting in `sock`'s listen queue, to be served by this
        process's drain: the kernel completed their handshake, so a client may have sent its
        request already, and the last close of the socket would reset them (a proxy answers
        502 to a POST it sent). Done in the same step as the close: none can slip in between."""
        loop = asyncio.get_running_loop()
        for _ in range(BACKLOG):
            try:
                conn, _ = sock.accept()
            except OSError:  # none waiting (or the socket is gone): done
                return
            conn.setblocking(False)
            task = loop.create_task(_serve_adopted(loop, self._cap, conn))
            self._adopted.add(task)
            task.add_done_callback(self._adopted.discard)


async def _serve_adopted(
    loop: asyncio.AbstractEventLoop, cap: ConnectionCap, conn: socket.socket
) -> None:
    try:
        await loop.connect_accepted_socket(cap, conn)
    except Exception:  # the client left already
        with contextlib.suppress(OSError):
            conn.close()


def bind(host: str | None, port: int, backlog: int = BACKLOG) -> list[socket.socket]:
    """Listening sockets for host:port, one per address it resolves to, as
    `loop.create_server` binds them (None or "": every interface)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class GatewaySite(web.BaseSite):
    """aiohttp's TCPSite, with the gateway's `Listener` and `ConnectionCap`."""

    __slots__ = ("_cap", "_host", "_on_broken", "_port", "_sockets")

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        cap: ConnectionCap,
        sockets: list[socket.socket] | None = None,
        on_broken: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(runner, backlog=BACKLOG)
        self._host = host
        self._port = port
        self._cap = cap
        self._sockets = sockets  # bound already (a worker's, shared with its siblings)
        self._on_broken = on_broken

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        sockets = self._sockets or bind(self._host, self._port, self._backlog)
        self._server = Listener(sockets, self._cap, self._on_broken)  # type: ignore[assignment]

    async def stop(self) -> None:
        await super().stop()
        self._cap.close()
