"""Request ids: every response names its request in `x-gateway-request-id`.

The id is the client's own `x-request-id` when it sent a sane one (so its logs and ours
join), else a new one. A client's value is sane when it is short and of a plain charset:
it is copied into a response header and into the access log, so nothing else gets through.
The upstream's own id is still relayed as `x-request-id` (see `gateway.engine.attempt`).

The id is stamped in `on_response_prepare`, which the front door's hook runs for every
response as its headers go out (errors, 404s, and streams, whose headers leave when the
dispatcher or a keepalive comment prepares them), so no handler has to remember it.
"""

from __future__ import annotations

import os
import re

from aiohttp import web

GATEWAY_REQUEST_ID = "x-gateway-request-id"
CLIENT_REQUEST_ID = "x-request-id"
REQUEST_ID = web.RequestKey("gateway_request_id", str)
# The status of the response whose headers went out (a stream's, when the client leaves).
SENT_STATUS = web.RequestKey("sent_status", int)

_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")


def pick_request_id(sent: str | None) -> str:
    """The client's id when sane (at most 128 characters of [A-Za-z0-9._:@/+=-]), else a
    new one: 32 hex digits."""
    if sent is not None and _SANE.fullmatch(sent):
        return sent
    return os.urandom(16).hex()


def assign(request: web.Request) -> str:
    request_id = pick_request_id(request.headers.get(CLIENT_REQUEST_ID))
    request[REQUEST_ID] = request_id
    return request_id


def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.get(REQUEST_ID)
    if request_id is None:  # a response made before the front door ran
        request_id = assign(request)
    response.headers[GATEWAY_REQUEST_ID] = request_id
    request[SENT_STATUS] = response.status
