"""The listening socket: connections accepted here, counted, and capped.

The event loop's own server (uvloop's, through libuv) meets a full file table by accepting and
at once closing connections ("the EMFILE trick"): clients see a reset and nothing is logged.
Accepting here instead, an EMFILE says so in the log (once a minute) and accepting pauses
briefly with a growing delay, as Go's net/http does, so that waiting connections stay queued
in the backlog until a file is free again.

Past `max_connections` open client connections, a new one is answered 503 in OpenAI's shape
and closed, instead of being served at the expense of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from gateway import fdlimit
from gateway.connection import ClientLimits, GuardedHandler, raw_response
from gateway.throttle import Throttled
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

_cap_reached = Throttled(log)
_accept_failed = Throttled(log)


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

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self._limit:
            _cap_reached.warning(
                f"{self.open} client connections are open, the limit ([server] "
                "max_connections): new ones are answered 503"
            )
            return _Refusal(self._refusals, self._limit)
        self.open += 1
        return GuardedHandler(self._server, self._limits, self._closed, **self._kwargs)

    def _closed(self) -> None:
        self.open -= 1

    def close(self) -> None:
        for transport in list(self._refusals):
            transport.abort()


class _Refusal(asyncio.Protocol):
    """Answers 503 at once, then closes: the write side first, so that the client reads the
    answer before the connection ends, and all of it within `_REFUSAL_LINGER`."""

    def __init__(self, registry: set[asyncio.Transport], limit: int) -> None:
        self._registry = registry
        self._limit = limit
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is no subclass of asyncio.Transport, though it is one in all
        # but name: an isinstance check here failed every refusal under uvloop.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._registry.add(transport)
        error = ServiceUnavailable(
            f"The gateway is serving its limit of {self._limit} connections; try again shortly."
        )
        transport.write(raw_response(error))
        with contextlib.suppress(OSError, RuntimeError, NotImplementedError):
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(_REFUSAL_LINGER, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # the request is not read: it is refused whatever it is

    def eof_received(self) -> bool:
        return False  # the client has read and closed: close too

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._registry.discard(self._transport)


class Listener:
    """Sockets bound to host:port, each with its accept loop (what `loop.create_server`
    returns, as far as aiohttp's runner needs: `sockets` and `close`)."""

    def __init__(self, sockets: list[socket.socket], factory: Callable[[], asyncio.Protocol]):
        self.sockets = sockets
        self._factory = factory
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._accept(sock)) for sock in sockets]

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        delay = _FIRST_DELAY
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
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
            delay = _FIRST_DELAY
            try:
                await loop.connect_accepted_socket(self._factory, conn)
            except Exception as exc:  # one connection's fault never ends accepting
                if not isinstance(exc, OSError):  # OSError: the client left already
                    log.exception("serving an accepted connection failed")
                # The loop may have closed the descriptor already (uvloop does, when the
                # protocol fails): closing it again is EBADF, never an end of accepting.
                with contextlib.suppress(OSError):
                    conn.close()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for sock in self.sockets:
            sock.close()


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

    __slots__ = ("_cap", "_host", "_port", "_sockets")

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        cap: ConnectionCap,
        sockets: list[socket.socket] | None = None,
    ) -> None:
        super().__init__(runner, backlog=BACKLOG)
        self._host = host
        self._port = port
        self._cap = cap
        self._sockets = sockets  # bound already (a worker's, shared with its siblings)

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        sockets = self._sockets or bind(self._host, self._port, self._backlog)
        self._server = Listener(sockets, self._cap)  # type: ignore[assignment]

    async def stop(self) -> None:
        await super().stop()
        self._cap.close()
