"""One keep-alive HTTP/1.1 connection to an upstream: an asyncio protocol fed to llhttp.

One exchange at a time. The parser's callbacks fill the exchange's state (status, headers,
body pieces); the reader (`http1.answer`) takes the body as it comes. Reading pauses when more
than `HIGH_WATER` bytes wait for a slow reader and resumes below `LOW_WATER` (aiohttp's
StreamReader marks), so a client that reads slowly slows the upstream's socket instead of
filling the gateway's memory. Nothing here formats an error: failures are the
`http1.lean_errors` kinds, raised to whoever waits.
"""

from __future__ import annotations

import asyncio
import socket
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.engine.transport.http1.lean_errors import (
    ClosedBeforeAnswer,
    ClosedMidBody,
    ConnectionLost,
    InvalidResponse,
)

HIGH_WATER = 2 * 64 * 1024
LOW_WATER = 64 * 1024
_NO_BODY = frozenset({204, 304})


class Connection(asyncio.Protocol):
    """A pooled connection and the state of the exchange under way on it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        origin: tuple[str, str, int],
        registry: set[Connection],
    ) -> None:
        self.loop = loop
        self.origin = origin  # (scheme, host, port): the pool it belongs to
        self._registry = registry  # the client's open connections, closed with it
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        # The exchange: reset by `begin`.
        self.head: asyncio.Future[None] | None = None  # resolved once the headers are in
        self.status = 0
        self.headers: CIMultiDictProxy[str] | None = None
        self._raw_headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []  # received, not yet taken
        self.size = 0  # bytes in `body`
        self.complete = False  # the whole answer is in
        self.reusable = False  # complete, and the upstream keeps the connection open
        self.error: BaseException | None = None
        self._until_close = False  # a body without length, ended by the upstream's close
        self._interim = False  # a 1xx answer before the real one
        self.waiter: asyncio.Future[None] | None = None  # the reader's, until more comes
        self._reading_paused = False
        self._writing_paused = False
        self._drain: asyncio.Future[None] | None = None
        # The provider's read timeout (aiohttp's sock_read): silence longer than this fails.
        self._read_timeout: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0

    # --- the exchange, as the client drives it ---

    def begin(self, read_timeout: float | None) -> asyncio.Future[None]:
        """Start an exchange; returns the future of its headers."""
        self.head = head = self.loop.create_future()
        self.status = 0
        self.headers = None
        self._raw_headers = []
        self.body = []
        self.size = 0
        self.complete = self.reusable = self._until_close = self._interim = False
        self.error = None
        self._read_timeout = read_timeout or None
        return head

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            raise self.error or ClosedMidBody()
        transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        transport = self.transport
        if transport is None:
            raise self.error or ClosedMidBody()
        transport.writelines(data)

    async def drain(self) -> None:
        """Wait while the upstream is slow to take what was written (streamed uploads)."""
        if self.error is not None:
            raise self.error
        if self._writing_paused:
            self._drain = self.loop.create_future()
            try:
                await self._drain
            finally:
                self._drain = None

    def request_sent(self) -> None:
        """The request is out: the read timeout runs from here (as aiohttp's does)."""
        if self._read_timeout is not None and not self.complete:
            self._last_read = self.loop.time()
            self._timer = self.loop.call_at(self._last_read + self._read_timeout, self._on_timer)

    async def wait(self) -> None:
        """Wait until more body, its end, or a failure."""
        self.waiter = waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None

    def took(self) -> None:
        """The reader took the buffered body: resume reading if it was paused."""
        self.size = 0
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def fail(self, error: BaseException) -> None:
        """End the exchange with `error` and drop the connection."""
        if self.error is None and not self.complete:
            self.error = error
            head = self.head
            if head is not None and not head.done():
                head.set_exception(error)
                head.exception()  # retrieved: a waiter cancelled meanwhile must not log it
            self._wake()
        self.close()

    def close(self) -> None:
        self.closed = True
        self._registry.discard(self)
        self._stop_timer()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(self.error or ClosedMidBody())
        transport = self.transport
        if transport is not None:
            self.transport = None
            transport.close()

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = transport = cast(asyncio.Transport, transport)
        self._registry.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # A token event is a small write: no Nagle delay on the request either.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.head is None or self.complete:
            # Bytes nobody asked for (on an idle connection, or after the answer): whatever
            # they are, the connection's framing can no longer be trusted.
            self.reusable = False
            self.close()
            return
        if self._read_timeout is not None:
            self._last_read = self.loop.time()
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):  # also a second answer
            if self.complete:
                self.close()  # the answer is whole; the connection is not to be reused
            else:
                self.fail(InvalidResponse())
            return
        if self.size > HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        return False  # close: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.close()
        if self.head is None or self.complete or self.error is not None:
            return  # idle in the pool, or the exchange is over: nothing waits
        if self.headers is None:
            if isinstance(exc, OSError):
                self.fail(ConnectionLost(exc))
            else:
                self.fail(ClosedBeforeAnswer())
        elif self._until_close and exc is None:
            self.complete = True  # the close is the end of this body
            self._wake()
        else:
            self.fail(ClosedMidBody())

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # --- llhttp's callbacks ---

    def on_message_begin(self) -> None:
        if self.complete:
            # A second answer to one request: refuse it (llhttp stops parsing here).
            self.reusable = False
            raise InvalidResponse()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints: the answer is still to come
            self._interim = True
            self._raw_headers = []
            return
        self.status = status
        self.headers = headers = CIMultiDictProxy(CIMultiDict(self._raw_headers))
        self._until_close = (
            status not in _NO_BODY
            and "Content-Length" not in headers
            and "chunked" not in headers.get("Transfer-Encoding", "").lower()
        )
        head = self.head
        if head is not None and not head.done():
            head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.size += len(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True
        self.reusable = self._parser.should_keep_alive()
        self._stop_timer()

    # --- internals ---

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_timer(self) -> None:
        self._timer = None
        timeout = self._read_timeout
        if timeout is None or self.complete or self.error is not None:
            return
        now = self.loop.time()
        if self._reading_paused:
            self._last_read = now  # the gateway's reader is slow, not the upstream
        due = self._last_read + timeout
        if now >= due:
            self.fail(TimeoutError())
        else:
            self._timer = self.loop.call_at(due, self._on_timer)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
