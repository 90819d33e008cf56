"""GET /console/api/feed: the requests that finish from now on, as Server-Sent Events.

Each event is one `Finished` entry, `id:` its number in the ring; a client that reconnects
sends the last number it saw as `Last-Event-ID` and gets what came after it (what the ring
still holds; an `event: gap` says how many fell out first). The admin key comes in the
`Authorization` header like every console route: the page reads this feed with fetch() and
a stream reader, since EventSource cannot send a header, and a key in the URL would reach
logs and the browser's history.

A feed wakes when the ring changes, and writes at most every FEED_EVERY seconds (what
finished meanwhile, in one write): however busy the gateway, a viewer costs ten writes a
second at most. A comment every HEARTBEAT seconds keeps idle proxies from closing it, and the
feed ends when the gateway drains, so that it does not hold a restart back.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from aiohttp import web

from gateway.console.admin import PRIVATE_HEADERS, require_admin
from gateway.console.ring import Finished
from gateway.console.state import CONSOLE
from gateway.server.drain import DRAIN
from wire.errors import GatewayError

PATH = "/console/api/feed"
FEED_EVERY = 0.1  # seconds between two writes to one viewer
HEARTBEAT = 15.0  # seconds of quiet before a comment
WAKE_EVERY = 1.0  # seconds between two looks at the drain, with nothing to send
MAX_FEEDS = 32  # open at once in one process

_encoder = msgspec.json.Encoder()


class TooManyFeeds(GatewayError):
    status = 503
    type = "server_error"
    code = "too_many_feeds"


def events(entries: list[Finished], last_seen: int) -> bytes:
    """The SSE bytes for `entries` (consecutive, oldest first), after `last_seen`."""
    out = bytearray()
    if entries and entries[0].id > last_seen + 1 and last_seen:
        out += b"event: gap\ndata: %d\n\n" % (entries[0].id - last_seen - 1)
    for entry in entries:
        out += b"id: %d\ndata: " % entry.id
        out += _encoder.encode(entry)
        out += b"\n\n"
    return bytes(out)


def _last_event_id(request: web.Request, newest: int) -> int:
    """Where the client left off; a client that saw nothing yet starts from now."""
    sent = request.headers.get("Last-Event-ID", "").strip()
    return int(sent) if sent.isdigit() else newest


async def feed(request: web.Request) -> web.StreamResponse:
    require_admin(request)
    console = request.app[CONSOLE]
    if console.feeds >= MAX_FEEDS:
        raise TooManyFeeds(f"{MAX_FEEDS} console feeds are open in this process, its limit.")
    ring = console.ring
    drain = request.app[DRAIN]
    last_seen = _last_event_id(request, ring.last_id)
    response = web.StreamResponse(
        headers={
            **PRIVATE_HEADERS,
            "Content-Type": "text/event-stream",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        }
    )
    console.feeds += 1
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n: connected\n\n")
        quiet_since = time.monotonic()
        while not drain.draining:
            entries = ring.after(last_seen)
            if entries:
                await response.write(events(entries, last_seen))
                last_seen = entries[-1].id
                quiet_since = time.monotonic()
                await asyncio.sleep(FEED_EVERY)  # what finishes meanwhile goes in one write
                continue
            if time.monotonic() - quiet_since >= HEARTBEAT:
                await response.write(b": keepalive\n\n")
                quiet_since = time.monotonic()
            # Shared by every feed: waited on, never cancelled.
            await asyncio.wait((ring.changed(),), timeout=WAKE_EVERY)
    finally:
        console.feeds -= 1
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, feed)
