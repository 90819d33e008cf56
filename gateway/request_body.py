"""A request's body, read once and kept by nobody but its reader.

aiohttp's `request.read()` keeps the body on the request, and aiohttp keeps a kept-alive
connection's last request (and its response) until the next request on it arrives: each idle
connection held its last body, up to `max_request_bytes` (ten 31 MiB requests at once left
310 MiB held by idle connections). Read this way, the body goes with the handler's references
to it.
"""

from __future__ import annotations

from aiohttp import web


async def read_body(request: web.Request) -> bytes:
    """The whole body, at most `client_max_size` bytes (past it, aiohttp's own 413)."""
    limit = request.client_max_size
    length = request.content_length
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return bytes(body)
