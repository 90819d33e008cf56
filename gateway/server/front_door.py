"""The front door: the one middleware every request passes through, and the one hook that
runs as each response's head goes out.

aiohttp runs each middleware as a coroutine frame of its own, on every request, and awaits
each `on_response_prepare` receiver in turn. The gateway's per-request concerns ran as up to
eight middlewares and three receivers; here they run in one function each, in the order they
had (outermost first):

1. the arrival and the request id; once answered, the access line and the response count
   (`Finished`, from `gateway.observability.install`: None when both are off);
2. the connection's timers: its head is in, its body due (`GuardedHandler`), and a large
   body's memory given back after;
3. the drain's count of requests in flight (`Drain`), and its closing of the connection;
4. the error answer, in the shape of the route's API (`answer_exception`), for everything
   below;
5. the checks, in order: CORS (`cors.cors_check`), Host and Content-Type
   (`guards.request_checks`), the gateway key (`keys.auth_check`). Each raises the request's
   error, or returns an answer that stands for the handler's (a CORS preflight), or None.

Whatever the config fixes (which checks run, whether anything is observed) is decided once,
here, at startup.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.server import cors, request_ids
from gateway.server.client_connection import SERVER_NAME, GuardedHandler
from gateway.server.drain import Drain
from gateway.server.error_middleware import answer_exception
from gateway.server.heap import HEAP, LARGE_BODY

# When the request arrived (perf_counter), noted first: the engine's record, and so TTFT,
# start there.
ARRIVED = web.RequestKey("arrived", float)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RequestCheck = Callable[[web.Request], web.StreamResponse | None]
ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]

CLIENT_CLOSED = 499  # nginx's status for a request whose client left before any answer


class Finished(Protocol):
    def finished(self, request: web.Request, status: int, arrived: float) -> None: ...


def front_door(
    finished: Finished | None, drain: Drain, checks: Sequence[RequestCheck | None]
) -> Middleware:
    """The middleware: `finished` observes each answered request, `drain` counts them, and
    `checks` (the Nones left out) run before the handler."""
    checking = tuple(check for check in checks if check is not None)
    observed = finished.finished if finished is not None else None
    perf_counter = time.perf_counter
    assign_id = request_ids.assign

    @web.middleware
    async def front(request: web.Request, handler: Handler) -> web.StreamResponse:
        arrived = perf_counter()
        request[ARRIVED] = arrived
        assign_id(request)
        protocol = request.protocol
        guarded = protocol if isinstance(protocol, GuardedHandler) else None
        if guarded is not None:
            guarded.request_started(request)
        task = drain.enter()
        try:
            try:
                response = None
                for check in checking:
                    response = check(request)
                    if response is not None:
                        break
                if response is None:
                    response = await handler(request)
            except Exception as exception:  # every error gets its API's answer
                response = answer_exception(request, exception)
            finally:
                drain.leave(task)
                if guarded is not None:
                    _request_finished(request, guarded)
        except asyncio.CancelledError:  # the client left; a stream's 200 may have gone out
            if observed is not None:
                observed(request, request.get(request_ids.SENT_STATUS, CLIENT_CLOSED), arrived)
            raise
        except web.HTTPException as http:  # not an error (a redirect): raised again
            if observed is not None:
                observed(request, http.status, arrived)
            raise
        if observed is not None:
            observed(request, response.status, arrived)
        return response

    return front


def _request_finished(request: web.Request, protocol: GuardedHandler) -> None:
    protocol.request_finished(request)
    length = request.content_length
    if length is not None and length >= LARGE_BODY:  # its memory, once the request is gone
        request.app[HEAP].freed(length)


def response_head(cors_on: bool, drain: Drain) -> ResponseHook:
    """The one `on_response_prepare` receiver: the Server header, the connection told its
    answer started, the CORS headers (when `cors_on`), the request id, and while draining
    `Connection: close`."""
    stamp_cors = cors.on_response_prepare if cors_on else None
    stamp_id = request_ids.on_response_prepare
    close_on_answer = drain.close_on_answer

    async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
        # aiohttp's default names itself and its version: say nothing a scanner can use.
        response.headers["Server"] = SERVER_NAME
        protocol = request.protocol
        if isinstance(protocol, GuardedHandler):
            protocol.response_started()
        if stamp_cors is not None:
            stamp_cors(request, response)
        stamp_id(request, response)
        close_on_answer(response)

    return on_response_prepare
