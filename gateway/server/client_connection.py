"""One client connection: aiohttp's protocol, with every wait on the client timed.

aiohttp bounds only the idle time between requests (its keep-alive timeout, 3,630 s by
default) and nothing while a request head or body trickles in. Here:

- the request head (line and headers) must be complete within `header_timeout`, counted from
  the connection's opening or, on a kept-alive connection, from the head's first byte
  (nginx's client_header_timeout; a silent connection is closed, a partial head gets a 408);
- a body must arrive at `min_body_rate` bytes/s over each `body_timeout` window the gateway
  spends waiting for it (Kestrel's MinRequestBodyDataRate); time when the gateway itself does
  not read (an upload waiting on its upstream) does not count;
- an idle kept-alive connection is closed after `idle_timeout` (aiohttp's keep-alive timer).

A request head aiohttp cannot parse (a TLS ClientHello on the plain port, say) is answered 400
in OpenAI's shape and logged at most once a minute, without a traceback.

The route side tells the connection when a request starts and ends (`gateway.server.guards`), and
when its response begins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from gateway.server.error_middleware import should_retry_value
from gateway.server.log_throttle import Throttled
from wire.errors import SHOULD_RETRY, BadRequest, GatewayError, RequestTimeout

log = logging.getLogger("gateway")

SERVER_NAME = "gateway"  # the Server header: a name, no versions

_malformed = Throttled(log)


class ClientLimits(msgspec.Struct, frozen=True):
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    min_body_rate: int = 240
    idle_timeout: float = 75.0


def raw_response(error: GatewayError) -> bytes:
    """A whole HTTP/1.1 response carrying `error`, for answers written outside aiohttp (before
    a request was parsed, or instead of one); the connection closes after it."""
    body = error.to_json()
    return (
        f"HTTP/1.1 {error.status} {_REASONS.get(error.status, 'Error')}\r\n"
        f"Server: {SERVER_NAME}\r\nContent-Type: application/json\r\n"
        f"{SHOULD_RETRY}: {should_retry_value(error, error.status)}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


_REASONS = {408: "Request Timeout", 503: "Service Unavailable"}

# Where a connection stands, for its timers.
_HEAD = 0  # a head is due: from the opening, or since its first byte
_IDLE = 1  # between requests: aiohttp's keep-alive timer runs
_BUSY = 2  # a request is being handled (its body may still be coming)
_LINGER = 3  # handled without reading its whole body: aiohttp reads the rest (lingering)


class GuardedHandler(RequestHandler):
    __slots__ = (
        "_body",
        "_head_bytes",
        "_limits",
        "_on_lost",
        "_response_started",
        "_state",
        "_timer",
        "_window_bytes",
        "_window_start",
    )

    def __init__(
        self,
        manager: Server,
        limits: ClientLimits,
        on_lost: Callable[[], None],
        **kwargs: Any,
    ) -> None:
        # A body's Content-Encoding is decoded by the route that reads it (gateway.server.bodies),
        # where a bad one is a 4xx in the route's own shape, not a traceback in aiohttp's reader.
        super().__init__(
            manager, keepalive_timeout=limits.idle_timeout, auto_decompress=False, **kwargs
        )
        self._limits = limits
        self._on_lost = on_lost
        self._state = _HEAD
        self._head_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._body: Any = None  # the request's StreamReader while its body is due
        self._window_bytes = 0
        self._window_start = 0.0
        self._response_started = False

    # --- the asyncio protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(self._limits.header_timeout, self._head_expired)

    def data_received(self, data: bytes) -> None:
        if data:
            state = self._state
            if state == _BUSY:
                self._window_bytes += len(data)
            elif state == _IDLE:
                self._state = _HEAD
                self._head_bytes = len(data)
                self._arm(self._limits.header_timeout, self._head_expired)
            elif state == _HEAD:
                self._head_bytes += len(data)
        super().data_received(data)
        if self._state == _LINGER and self._body is not None and self._body.is_eof():
            self._state = _IDLE  # the rest of the body is in: what follows is a new head
            self._body = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._body = None
        on_lost, self._on_lost = self._on_lost, _nothing
        on_lost()
        super().connection_lost(exc)

    def resume_reading(self, resume_parser: bool = True) -> None:
        # Called on every read that drains the buffer; after a pause, the gateway takes body
        # bytes again: a fresh window, the paused time not counted.
        if self._reading_paused:
            self._new_window()
        super().resume_reading(resume_parser)

    # --- told by the routes (gateway.server.guards) ---

    def request_started(self, request: web.Request) -> None:
        self._state = _BUSY
        self._response_started = False
        self._disarm()
        if request.body_exists and not request.content.is_eof():
            self._body = request.content
            self._new_window()
            self._arm(self._limits.body_timeout, self._check_body)

    def holds_request(self) -> bool:
        """A request is on this connection: its head begun or parsed and waiting, being
        handled or answered, or the rest of its body being read. A drain waits for these and
        closes the others (`gateway.server.drain`)."""
        if self._request_in_progress or self._messages:
            return True
        state = self._state
        return state in (_BUSY, _LINGER) or (state == _HEAD and self._head_bytes > 0)

    def response_started(self) -> None:
        self._response_started = True

    def request_finished(self, request: web.Request) -> None:
        self._disarm()
        if request.body_exists and not request.content.is_eof():
            self._state = _LINGER  # not a head: the rest of a body nobody reads
            self._body = request.content
        else:
            self._state = _IDLE
            self._body = None

    # --- timers ---

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_expired(self) -> None:
        self._timer = None
        if self._state != _HEAD or self.transport is None:
            return
        if self._head_bytes:  # a client that started a request hears why it ends
            self.transport.write(
                raw_response(
                    RequestTimeout(
                        "The request head (its line and headers) did not arrive within "
                        f"{self._limits.header_timeout:g} seconds."
                    )
                )
            )
        self.force_close()

    def _new_window(self) -> None:
        self._window_bytes = 0
        self._window_start = self._loop.time()

    def _check_body(self) -> None:
        self._timer = None
        body = self._body
        if self._state != _BUSY or body is None or self.transport is None:
            return
        if body.is_eof():
            self._body = None
            return
        limits = self._limits
        window_end = self._window_start + limits.body_timeout
        if self._reading_paused or self._loop.time() < window_end:
            # Not reading (an upload waiting on its upstream), or a window restarted since.
            self._timer = self._loop.call_at(
                max(window_end, self._loop.time() + limits.body_timeout), self._check_body
            )
            return
        if self._window_bytes >= limits.min_body_rate * limits.body_timeout:
            self._new_window()
            self._arm(limits.body_timeout, self._check_body)
            return
        if not self._response_started:
            self.transport.write(
                raw_response(
                    RequestTimeout(
                        f"The request body arrived slower than {limits.min_body_rate} bytes "
                        f"per second over {limits.body_timeout:g} seconds."
                    )
                )
            )
        self.force_close()  # the handler is cancelled, and with it any upstream request

    # --- a head aiohttp could not parse ---

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: too late for another response
            raise ConnectionError("Response is sent already, cannot send another response")
        if isinstance(exc, HttpProcessingError):
            reason = _describe(exc)
            _malformed.warning(f"malformed request from {request.remote}: {reason}")
            error: GatewayError = BadRequest(f"The request is not valid HTTP/1.1: {reason}.")
        else:  # the app's middleware answers every error it sees: this one escaped it
            log.error("error outside the request handler (%s)", type(exc).__name__)
            error = GatewayError("The gateway failed to handle the request.", status=status)
        response = web.Response(
            body=error.to_json(),
            status=error.status,
            content_type="application/json",
            headers={"Server": SERVER_NAME, SHOULD_RETRY: should_retry_value(error, error.status)},
        )
        response.force_close()
        return response


def _describe(exc: HttpProcessingError) -> str:
    """aiohttp's parser message ("Received HTTPS traffic on an HTTP port"), first line only:
    the rest repeats the client's bytes."""
    text = exc.message.strip() if isinstance(exc.message, str) else ""
    return text.splitlines()[0].rstrip(":. ") if text else type(exc).__name__


def _nothing() -> None:
    pass
