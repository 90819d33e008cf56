"""The access log: one JSON line per finished request, on stderr.

A line says what happened to a request without anything secret: no header values (keys,
Authorization), no request or answer text; the model as the client named it, the gateway
key by its name in the config, errors by status and code, never by message (an upstream's
message may quote the prompt).

The lines go to the `gateway.access` logger; `configure` (called by the CLI) writes them to
stderr as they are, independent of `--log-level`, which sets the level of everything else.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import TextIO

import msgspec

log = logging.getLogger("gateway.access")


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


def now_iso() -> str:
    return datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="milliseconds")


def write(line: AccessLine) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info(_encoder.encode(line).decode())


def configure(stream: TextIO | None = None) -> None:
    """Send access lines to `stream` (stderr) as bare JSON, whatever the root logger does."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
