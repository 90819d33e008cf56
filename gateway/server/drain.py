"""Graceful drain: on SIGTERM, stop taking connections and let requests in flight finish.

A rolling restart must not cut a two-minute reasoning stream. So the first SIGTERM (or
SIGINT) starts a drain: the listening sockets close (a new connection is refused, and a load
balancer moves on), `GET /ready` answers 503, and the requests in flight run on for up to
`[server] drain_timeout` seconds (aiohttp's own shutdown would cancel them instead). Whatever
still runs then is ended: a stream with its final error event (the client knows to retry), any
other request with a 503. A second signal stops at once. A reload drains the old generation
the same way, while the new one accepts on the same sockets.

The drain goes by each connection's state (`GuardedHandler.holds_request`), never by "no
request is running right now", which is true between two requests on a kept-alive
connection:
- a connection that holds a request (its head begun, handled, its answer being written) is
  left alone; its answer says `Connection: close`, and the connection closes after it;
- an idle kept-alive connection is kept for `_IDLE_GRACE` seconds, so that a request a proxy
  wrote on it just before the signal still arrives and is served (with `Connection: close`);
  then it is closed, as its idle timeout would;
- the process goes on until no connection holds a request (or the drain's time is up), and
  only then are the app's clients closed: no handler is ever cancelled by the cleanup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.server.client_connection import GuardedHandler
from wire.errors import GatewayError

log = logging.getLogger("gateway")

# Idle kept-alive connections stay open this long into a drain (a request already on its way
# is served), then close. Bounded by the drain's own timeout.
_IDLE_GRACE = 1.0
# How often the drain looks at its connections (it acts once, never per request or chunk).
_LOOK_EVERY = 0.05


class ShuttingDown(GatewayError):
    status = 503
    type = "server_error"
    code = "gateway_shutting_down"


class Drain:
    """One gateway process's drain: its state, and the requests in flight."""

    def __init__(self) -> None:
        self.ready = False  # set once the app serves (providers built, sockets bound)
        self.draining = False
        self.cutting = False  # the drain's time is up: requests still running are ended
        self._in_flight: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._ended = 0  # requests that ended while draining
        # Set when this process can take no more connections (its listener is broken and
        # restarting it did not help): `gateway` drains it and exits 1, so that a supervisor
        # or service manager starts a fresh one.
        self.broken = asyncio.Event()

    def ended_error(self) -> ShuttingDown:
        return ShuttingDown(
            "The gateway is shutting down and ended this request: send it again (another "
            "instance will answer)."
        )

    def enter(self) -> asyncio.Task[object]:
        """The current request is in flight (the front door calls this first, `leave` last)."""
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        self._idle.clear()
        return task

    def leave(self, task: asyncio.Task[object]) -> None:
        self._in_flight.discard(task)
        if not self._in_flight:
            self._idle.set()
        if self.draining:
            self._ended += 1

    def close_on_answer(self, response: web.StreamResponse) -> None:
        """While draining, every answer (a stream's too) closes its connection (the front
        door's response-head hook calls this)."""
        if self.draining:
            response.force_close()
            response.headers["Connection"] = "close"  # aiohttp wrote its headers already

    async def run(
        self,
        runner: web.AppRunner,
        timeout: float,
        stopped_accepting: Callable[[], None] = lambda: None,
        why: str = "stopping",
    ) -> None:
        """Drain `runner`: stop accepting (then `stopped_accepting`, which closes the listening
        sockets when the process stops), serve what its connections hold for up to `timeout`
        seconds, end the rest, close."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        self.draining = True
        for site in list(runner.sites):
            await site.stop()
        stopped_accepting()
        server = runner.server
        assert server is not None
        log.info(
            "drain started (%s): %d requests in flight on %d connections, up to %g s",
            why,
            len(self._in_flight),
            len(server.connections),
            timeout,
        )
        idle_until = began + min(_IDLE_GRACE, timeout)
        while True:
            now = loop.time()
            busy = _close_idle(server.connections, close=now >= idle_until)
            if (not busy and now >= idle_until) or now >= began + timeout:
                break
            await asyncio.sleep(_LOOK_EVERY)
        cut = await self.cut()
        for connection in server.connections:  # none holds a request now
            connection.force_close()
        await runner.cleanup()
        log.info(
            "drain ended (%s) after %.1f s: %d requests finished, %d cut",
            why,
            loop.time() - began,
            self._ended - cut,
            cut,
        )

    async def cut(self) -> int:
        """End every request still running (streams get their error event); how many."""
        self.cutting = True
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        return len(tasks)


def _close_idle(connections: list[RequestHandler], *, close: bool) -> int:
    """Close (if `close`) the connections that hold no request; how many hold one."""
    busy = 0
    for connection in connections:
        if isinstance(connection, GuardedHandler) and connection.holds_request():
            busy += 1
        elif close:
            connection.force_close()
    return busy


DRAIN = web.AppKey("drain", Drain)
