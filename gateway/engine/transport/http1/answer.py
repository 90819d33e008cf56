"""An upstream's answer on a lean connection: the `wire.upstream.Upstream` the relay reads.

The body is taken as it arrives (`chunks`), or whole up to the gateway's limit (`read`); a
gzip or deflate body is inflated a bounded piece at a time, as the reader takes it, so a small
compressed bomb never becomes one large allocation. `close` gives a connection whose answer
is complete back to its pool, and closes any other at once: a connection closed mid-body is
what tells the upstream to stop generating.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Callable

from aiohttp.helpers import parse_content_type
from multidict import CIMultiDictProxy

from gateway.engine.transport.http1.connection import Connection
from gateway.engine.transport.http1.lean_errors import NotInflatable
from gateway.engine.transport.whole_body import read_whole
from wire.upstream import Holder

_PIECE = 256 * 1024  # the most one inflation step yields
# Content-Type values seen, parsed as aiohttp parses them (the same answers, without
# running the email parser for every response).
_TYPES: dict[str | None, str] = {None: "application/octet-stream"}
_TYPES_KEPT = 256


class LeanUpstream:
    __slots__ = (
        "_conn",
        "_inflater",
        "_limit",
        "_release",
        "_released",
        "_writer",
        "content_type",
        "headers",
        "request_id",
        "status",
    )

    def __init__(
        self,
        conn: Connection,
        release: Callable[[Connection], None],
        limit: int,
        writer: asyncio.Task[None] | None,
    ) -> None:
        headers = conn.headers
        assert headers is not None
        self._conn = conn
        self._release = release
        self._released = False
        self._limit = limit
        self._writer = writer  # a streamed upload still being sent
        self.status = conn.status
        self.headers: CIMultiDictProxy[str] = headers
        self.content_type = content_type(headers.get("Content-Type"))
        # OpenAI and most compatible servers say x-request-id; Anthropic says request-id.
        self.request_id = headers.get("x-request-id") or headers.get("request-id")
        encoding = headers.get("Content-Encoding", "").lower()
        self._inflater = Inflater(encoding) if encoding in Inflater.ASKED else None

    def chunks(self) -> AsyncIterator[bytes]:
        return _Chunks(self._conn, self._inflater)

    async def read(self, holder: Holder | None = None) -> bytes:
        """The whole body, at most `limit` bytes of it once inflated, or `BodyTooLarge`;
        `holder` counts its bytes (a length announced up front, before any is read)."""
        length = self.headers.get("Content-Length")
        trusted = self._inflater is None and length is not None and length.isdigit()
        return await read_whole(
            _Chunks(self._conn, self._inflater),
            limit=self._limit,
            announced=int(length) if trusted and length is not None else None,
            holder=holder,
            content_type=self.content_type,
        )

    async def finish(self, wait: float) -> None:
        conn = self._conn
        if conn.complete or conn.error is not None:
            return
        try:
            async with asyncio.timeout(wait):
                while not conn.complete and conn.error is None:
                    conn.body.clear()  # anything after the terminal event is not for the client
                    conn.took()
                    await conn.wait()
        except TimeoutError:
            pass  # close() drops the connection then

    def close(self) -> None:
        if self._released:
            return
        self._released = True
        conn = self._conn
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()  # the answer is over (or abandoned): the upload goes nowhere
            conn.reusable = False
        if conn.reusable and not conn.closed:
            self._release(conn)
        else:
            conn.close()


class _Chunks:
    """The body as it arrives: each step takes everything received so far."""

    __slots__ = ("_conn", "_inflater")

    def __init__(self, conn: Connection, inflater: Inflater | None) -> None:
        self._conn = conn
        self._inflater = inflater

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        inflater = self._inflater
        while True:
            if inflater is not None and inflater.pending:
                out = inflater.feed(b"")
                if out:
                    return out
            body = conn.body
            if body:
                data = body[0] if len(body) == 1 else b"".join(body)
                body.clear()
                conn.took()
                if inflater is None:
                    return data
                out = inflater.feed(data)
                if out:
                    return out
                continue
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                if inflater is not None:
                    out = inflater.end()
                    if out:
                        return out
                raise StopAsyncIteration
            # conn.wait(), inlined: this is once per upstream read of every stream.
            conn.waiter = waiter = conn.loop.create_future()
            try:
                await waiter
            finally:
                conn.waiter = None


class Inflater:
    """gzip or deflate, inflated at most `_PIECE` bytes per step."""

    # What the gateway asks for (aiohttp's Accept-Encoding here), and what aiohttp would
    # try to decode: br and zstd are refused as aiohttp refuses them without their packages.
    ASKED = frozenset({"gzip", "deflate", "br", "zstd"})

    __slots__ = ("_decoder", "_encoding", "_fed", "_tail")

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._decoder: zlib._Decompress | None = None
        self._tail = b""
        self._fed = False

    @property
    def pending(self) -> bool:
        return bool(self._tail)

    def feed(self, data: bytes) -> bytes:
        decoder = self._decoder
        if decoder is None:
            if not data:
                return b""
            if self._encoding == "gzip":
                wbits = 16 + zlib.MAX_WBITS
            elif self._encoding == "deflate":
                # RFC 9110's deflate is zlib-wrapped; some servers send it raw (aiohttp and
                # browsers read both): the first byte tells.
                wbits = zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS
            else:
                raise NotInflatable()
            decoder = self._decoder = zlib.decompressobj(wbits)
        self._fed = True
        try:
            out = decoder.decompress(self._tail + data if self._tail else data, _PIECE)
        except zlib.error:
            raise NotInflatable() from None
        self._tail = decoder.unconsumed_tail
        return out

    def end(self) -> bytes:
        decoder = self._decoder
        if decoder is None:
            return b""
        try:
            out = decoder.flush()
        except zlib.error:
            raise NotInflatable() from None
        if self._encoding == "deflate" and not decoder.eof:
            raise NotInflatable()  # a truncated deflate stream (aiohttp's check)
        return out


def content_type(raw: str | None) -> str:
    """The media type of a Content-Type value, lowercase, as aiohttp reads it."""
    known = _TYPES.get(raw)
    if known is None:
        assert raw is not None
        known = parse_content_type(raw)[0]
        if len(_TYPES) > _TYPES_KEPT:
            _TYPES.clear()
            _TYPES[None] = "application/octet-stream"
        _TYPES[raw] = known
    return known
