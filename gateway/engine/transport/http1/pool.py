"""The lean client: keep-alive connections per upstream origin, and sending one request.

A connection whose answer was read to its end goes back to its origin's pool (the last one
back is the first one out: the warmest); one closed by the upstream while it waited there is
skipped. Idle connections are closed after `IDLE_KEPT` seconds, as aiohttp's connector does.
TLS goes through the loop (`create_connection(ssl=...)`), with aiohttp's default context.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterable

import aiohappyeyeballs
import aiohttp

from gateway.engine.transport.http1.answer import LeanUpstream
from gateway.engine.transport.http1.connection import Connection
from gateway.engine.transport.http1.lean_errors import ConnectFailed
from gateway.engine.transport.http1.route import Route, request_head
from gateway.engine.transport.upstream_errors import MAX_BODY_BYTES, RedirectRefused
from wire.upstream import UpstreamRequest

IDLE_KEPT = 15.0  # seconds, aiohttp's keepalive_timeout
DNS_KEPT = 300.0  # seconds a host's addresses are kept (the gateway's aiohttp ttl_dns_cache)
# RFC 8305's connection attempt delay, as aiohttp: an address family that does not answer
# (IPv6 without a route) costs a quarter second, not the whole connect timeout.
HAPPY_EYEBALLS_DELAY = 0.25
AddrInfo = tuple[int, int, int, str, tuple[object, ...]]  # one of getaddrinfo's answers
_SMALL_BODY = 16 * 1024  # copied after the head into one write; a larger one goes as is


def default_ssl_context() -> ssl.SSLContext:
    """aiohttp's verified context: the system's CAs, HTTP/1.1 offered by ALPN."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(("http/1.1",))
    return context


class LeanClient:
    def __init__(
        self, max_body_bytes: int = MAX_BODY_BYTES, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._limit = max_body_bytes
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._open: set[Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self._addresses: dict[tuple[str, int], tuple[float, list[AddrInfo]]] = {}

    async def start(self) -> None:
        if self._ssl is None:
            # Loading the CAs reads files: once, off the loop.
            self._ssl = await asyncio.to_thread(default_ssl_context)

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()

    async def send(
        self, route: Route, request: UpstreamRequest, timeout: aiohttp.ClientTimeout
    ) -> LeanUpstream:
        conn = self._acquire(route.origin)
        if conn is None:
            conn = await self._connect(route, timeout.sock_connect)
        head = conn.begin(timeout.sock_read)
        writer: asyncio.Task[None] | None = None
        try:
            body = request.body
            if isinstance(body, bytes):
                start, _ = request_head(route, request.method, request.headers, len(body))
                if len(body) <= _SMALL_BODY:
                    conn.write(start + body)
                else:
                    conn.writelines([start, body])
                conn.request_sent()
            else:
                start, chunked = request_head(route, request.method, request.headers, None)
                conn.write(start)
                writer = asyncio.get_running_loop().create_task(_upload(conn, body, chunked))
            await head
        except BaseException:
            if writer is not None:
                writer.cancel()
            conn.close()
            raise
        if 300 <= conn.status < 400:
            # Not followed: a redirect would carry the provider's key headers and the body
            # to wherever it points.
            if writer is not None:
                writer.cancel()
            conn.close()
            raise RedirectRefused(conn.status)
        return LeanUpstream(conn, self._release, self._limit, writer)

    def _acquire(self, origin: tuple[str, str, int]) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def _connect(self, route: Route, timeout: float | None) -> Connection:
        loop = asyncio.get_running_loop()
        origin = route.origin
        tls = self._ssl if route.tls else None
        try:
            async with asyncio.timeout(timeout):
                sock = await aiohappyeyeballs.start_connection(
                    await self._resolve(route.host, route.port),
                    happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY,
                )
                try:
                    _, conn = await loop.create_connection(
                        lambda: Connection(loop, origin, self._open),
                        sock=sock,
                        ssl=tls,
                        server_hostname=route.host if tls is not None else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise
        except OSError as exc:  # refused, unresolved, TLS (ssl.SSLError is an OSError)
            raise ConnectFailed(exc) from None
        if self._closed:
            conn.close()
            raise ConnectFailed(ConnectionAbortedError())
        return conn

    async def _resolve(self, host: str, port: int) -> list[AddrInfo]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        known = self._addresses.get((host, port))
        if known is not None and known[0] > now:
            return known[1]
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        infos = [(int(f), int(t), p, name, tuple(addr)) for f, t, p, name, addr in found]
        if len(self._addresses) > 1024:
            self._addresses.clear()
        self._addresses[(host, port)] = (now + DNS_KEPT, infos)
        return infos

    def _release(self, conn: Connection) -> None:
        if self._closed:
            conn.close()
            return
        conn.idle_since = conn.loop.time()
        idle = self._idle.get(conn.origin)
        if idle is None:
            self._idle[conn.origin] = [conn]
        else:
            idle.append(conn)
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(IDLE_KEPT, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        loop = asyncio.get_running_loop()
        oldest = loop.time() - IDLE_KEPT
        for origin, idle in list(self._idle.items()):
            kept = []
            for conn in idle:
                if conn.closed:
                    continue
                if conn.idle_since <= oldest:
                    conn.close()
                else:
                    kept.append(conn)
            if kept:
                self._idle[origin] = kept
            else:
                del self._idle[origin]
        if self._idle:
            self._sweeper = loop.call_later(IDLE_KEPT / 3, self._sweep)


async def _upload(conn: Connection, body: AsyncIterable[bytes], chunked: bool) -> None:
    """Send a streamed body as the client's upload arrives, at the upstream's pace."""
    try:
        async for piece in body:
            if not piece:
                continue
            if chunked:
                conn.writelines([b"%x\r\n" % len(piece), piece, b"\r\n"])
            else:
                conn.write(piece)
            await conn.drain()
        if chunked:
            conn.write(b"0\r\n\r\n")
        conn.request_sent()
    except Exception as exc:  # the upload failed (a GatewayError: too large, cut short)
        conn.fail(exc)
