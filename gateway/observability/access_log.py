"""The access log: one JSON line per finished request, on stderr.

A line says what happened to a request without anything secret: no header values (keys,
Authorization), no request or answer text; the model as the client named it, the gateway
key by its name in the config, errors by status and code, never by message (an upstream's
message may quote the prompt).

Lines are written in batches, at most FLUSH_EVERY seconds after they were made: one write
per line would cost a system call and a wake-up of the reader per request, more than the
rest of the line's making. Each write is whole lines of at most PIPE_BUF bytes, which a
pipe takes atomically, so the lines of several workers sharing one stderr never interleave.
The access log is independent of `--log-level`, which sets the level of everything else.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from gateway.engine.events import RequestRecord


class AccessLine(msgspec.Struct, gc=False):
    time: str  # when the request finished, UTC, ISO 8601 with milliseconds
    request_id: str  # as in the x-gateway-request-id header
    method: str
    route: str  # the route's pattern ("/v1/models/{id}"), or the path when none matched
    status: int  # the HTTP status sent (a stream that failed late is still 200); 499: none
    model: str | None  # as the client named it (an alias, or provider/model)
    served: str | None  # the provider/model that answered
    attempts: int  # upstream attempts, retries and fallbacks included
    stream: bool | None  # None: the request was refused before it was read
    ttft_ms: float | None  # streams: arrival -> first content sent
    duration_ms: float  # arrival -> last byte
    input_tokens: int | None
    output_tokens: int | None
    key: str | None  # the gateway key's name
    error_type: str  # as the metrics' label: "" or the error's status, or "cancelled"
    error_code: str | None  # the error's OpenAI-style code (or type), e.g. upstream_timeout
    # What the answer cost in USD (the record's, priced once); None: unknown, or nothing
    # answered. Its source: table, override, default or unknown.
    cost_usd: Decimal | None = None
    cost_source: str | None = None
    usage_estimated: bool = False  # the tokens (and so the cost) were estimated: a cut stream
    cache: str | None = None  # the response cache: hit, miss, bypass; None: not cached route
    cache_saved_usd: float | None = None  # a hit: what its answer would have cost upstream
    # Why the answer ended, in OpenAI's words (stop, length, tool_calls, content_filter): its
    # first choice's; None when the upstream said none (a cut stream, an error, a cache hit).
    finish_reason: str | None = None


_encoder = msgspec.json.Encoder(decimal_format="number")  # a cost exactly, as a number

FLUSH_EVERY = 0.05  # seconds a line may wait for its batch
PIPE_BUF = 4096  # POSIX: a write of at most this many bytes to a pipe is atomic
_FLUSH_AT = 256  # lines pending that are written at once
_MAX_NAME = 256  # characters of a model name kept in a line

_second: list[tuple[int, str]] = [(0, "")]  # the last second formatted, for the next line
_MILLISECONDS = tuple(f".{ms:03d}Z" for ms in range(1000))


def line_of(
    at: float,
    request_id: str,
    method: str,
    route: str,
    status: int,
    record: RequestRecord | None,
    key: str | None,
    duration: float,
    error_type: str,
) -> AccessLine:
    """The line of a request that finished at `at` (time.time()) after `duration` seconds;
    `record` is the dispatcher's, when the request reached it."""
    second = int(at)
    cached, text = _second[0]
    if second != cached:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second[0] = (second, text)
    finished = text + _MILLISECONDS[int((at - second) * 1000)]  # UTC, ISO 8601, with ms
    if record is None:  # answered before the dispatcher (a 401, a 400 of the body, ...)
        return AccessLine(
            finished, request_id, method, route, status, None, None, 0, None, None,
            _ms(duration), None, None, key, error_type, None,
        )  # fmt: skip
    usage = record.usage
    inputs, outputs = (usage.input, usage.output) if usage is not None else (None, None)
    error = record.error
    first = record.first_content
    cost = record.cost
    return AccessLine(
        finished,
        request_id,
        method,
        route,
        status,
        record.model[:_MAX_NAME],  # the client's words: a line stays one atomic write
        record.served[:_MAX_NAME] if record.served is not None else None,
        len(record.attempts),
        record.stream,
        _ms(first - record.started) if first is not None else None,
        _ms(duration),
        inputs,
        outputs,
        key,
        error_type,
        (error.code or error.type) if error is not None else None,
        cost.usd if cost is not None else None,
        cost.source if cost is not None else None,
        usage is not None and usage.estimated,
        record.cache,
        record.cache_saved_usd,
        record.finish_reasons[0] if record.finish_reasons else None,
    )


def _ms(seconds: float) -> float:
    """Milliseconds to the microsecond (faster than round())."""
    return int(seconds * 1_000_000 + 0.5) / 1000


class AccessLog:
    """Lines waiting to be written to stderr in batches (its file descriptor as found at
    each write: a test may redirect it)."""

    def __init__(self) -> None:
        self._pending: list[AccessLine] = []
        self._timer: asyncio.TimerHandle | None = None

    def write(self, line: AccessLine) -> None:
        self._pending.append(line)
        if len(self._pending) >= _FLUSH_AT:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_EVERY, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            fd = sys.stderr.fileno()
            batch = bytearray()
            for line in pending:
                data = _encoder.encode(line)
                if batch and len(batch) + len(data) >= PIPE_BUF:
                    _write_all(fd, bytes(batch))
                    batch.clear()
                batch += data
                batch += b"\n"
            _write_all(fd, bytes(batch))
        except (OSError, ValueError):  # stderr closed: nobody reads the log any more
            pass


def _write_all(fd: int, data: bytes) -> None:
    while data:  # stderr blocks: one write takes it all, but a signal may cut it short
        data = data[os.write(fd, data) :]
