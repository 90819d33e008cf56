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
import time
from datetime import UTC, datetime

import msgspec


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


_encoder = msgspec.json.Encoder()

FLUSH_EVERY = 0.05  # seconds a line may wait for its batch
PIPE_BUF = 4096  # POSIX: a write of at most this many bytes to a pipe is atomic
_FLUSH_AT = 16 * PIPE_BUF  # bytes pending that are written at once


_second: list[tuple[int, str]] = [(0, "")]  # the last second formatted, for the next line


def now_iso() -> str:
    """UTC, ISO 8601, with milliseconds: "2025-05-01T12:00:00.123Z"."""
    now = time.time()
    second = int(now)
    cached, text = _second[0]
    if second != cached:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second[0] = (second, text)
    return f"{text}.{int((now - second) * 1000):03d}Z"


class AccessLog:
    """Lines pending for stderr (its file descriptor, as found at each write: a test may
    redirect it), written in batches."""

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def write(self, line: AccessLine) -> None:
        data = _encoder.encode(line) + b"\n"
        self._pending.append(data)
        self._size += len(data)
        if self._size >= _FLUSH_AT:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_EVERY, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending, self._size = self._pending, [], 0
        if not pending:
            return
        try:
            fd = sys.stderr.fileno()
            batch = b""
            for data in pending:
                if batch and len(batch) + len(data) > PIPE_BUF:
                    _write_all(fd, batch)
                    batch = b""
                batch += data
            _write_all(fd, batch)
        except (OSError, ValueError):  # stderr closed: nobody reads the log any more
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
