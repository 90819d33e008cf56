"""The response cache, as the engine meets it: a hit answered, a miss's answer kept.

A hit is answered without an attempt, in the client's format (`formats.stored_answer`): the
whole answer, or, streamed, the whole stream in one write (the finish_reason and usage in its
last event, as always). A miss keeps what it relays, for the fill after its last byte: a whole
answer is the body already held; a stream's client bytes are kept as they go out
(`KeptStream`, nothing else per chunk), up to `[cache] max_entry_bytes`, past which keeping
stops and nothing is stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from aiohttp import web

from formats.stream_format import StreamFormat
from formats.translator import StreamTranslator
from gateway.engine.events import RequestRecord
from gateway.engine.ports import CacheTicket
from wire.errors import GatewayError
from wire.usage import Usage

log = logging.getLogger("gateway")

CACHE_STATE = "x-gateway-cache"  # hit, miss or bypass, on every answer of a cached route


async def answer_hit(
    request: web.Request,
    record: RequestRecord,
    rendered: bytes,
    stream_format: StreamFormat | None,
    headers: Mapping[str, str],
) -> web.StreamResponse:
    """Send a stored answer, `rendered` in the client's format: a stream (`stream_format`)
    or a whole JSON answer."""
    response: web.StreamResponse
    if stream_format is None:
        response = web.Response(body=rendered, content_type="application/json", headers=headers)
    else:
        response = web.StreamResponse(headers={**stream_format.headers, **headers})
    try:
        await response.prepare(request)
        record.first_content = time.perf_counter()
        await response.write_eof(b"" if stream_format is None else rendered)
    except ConnectionError:
        pass  # the client left; aiohttp finds so too when it finishes the response
    if isinstance(response, web.Response):
        response.body = None  # aiohttp keeps a kept-alive connection's last response
    record.ended = time.perf_counter()
    return response


def fill(
    ticket: CacheTicket, label: str, store_form: Callable[[bytes], bytes | None], relayed: bytes
) -> None:
    """Store what `label` answered, turned into the stored form; an answer that cannot be
    read back is not stored (never an error: the client has its answer)."""
    try:
        stored = store_form(relayed)
    except (GatewayError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.debug("cache: answer of %s not stored: %s", label, exc)
        return
    if stored is not None:
        ticket.fill(label, stored)


class KeptStream:
    """A stream's translator whose client bytes are also kept, up to `limit` bytes."""

    __slots__ = ("_inner", "_limit", "_parts", "_size")

    def __init__(self, inner: StreamTranslator, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._parts: list[bytes] | None = []  # None: past the limit, nothing kept
        self._size = 0

    @property
    def finished(self) -> bool:
        return self._inner.finished

    @property
    def failure(self) -> GatewayError | None:
        return self._inner.failure

    @property
    def usage(self) -> Usage | None:
        return self._inner.usage

    @property
    def usage_so_far(self) -> Usage | None:
        return self._inner.usage_so_far

    @property
    def finish_reasons(self) -> tuple[str, ...]:
        return self._inner.finish_reasons

    def feed(self, data: bytes) -> bytes:
        return self._keep(self._inner.feed(data))

    def end(self) -> bytes:
        return self._keep(self._inner.end())

    def error_event(self, error: GatewayError) -> bytes | None:
        self._parts = None  # a failed stream is never stored
        return self._inner.error_event(error)

    def whole(self) -> bytes | None:
        """Every byte the client got, when the stream ended well and within the limit."""
        inner = self._inner
        if self._parts is None or not inner.finished or inner.failure is not None:
            return None
        return b"".join(self._parts)

    def _keep(self, out: bytes) -> bytes:
        parts = self._parts
        if parts is not None and out:
            self._size += len(out)
            if self._size > self._limit:
                self._parts = None
            else:
                parts.append(out)
        return out
