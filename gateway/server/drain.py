"""Graceful drain: on SIGTERM, stop taking connections and let requests in flight finish.

A rolling restart must not cut a two-minute reasoning stream. So the first SIGTERM (or
SIGINT) starts a drain: the listening sockets close (a new connection is refused, and a load
balancer moves on), `GET /ready` answers 503, every answer from then on closes its connection,
and the requests in flight run on for up to `[server] drain_timeout` seconds (aiohttp's own
shutdown would cancel them instead). Whatever still
runs then is ended: a stream with its final error event (the client knows to retry), any
other request with a 503. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from wire.errors import GatewayError


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

    def close_after(self, response: web.StreamResponse) -> None:
        """While draining, the connection of an answer not yet sent ends with it."""
        if self.draining and not response.prepared:
            response.force_close()

    async def run(self, runner: web.AppRunner, timeout: float) -> None:
        """Drain `runner`: stop accepting, wait up to `timeout` seconds for the requests in
        flight, end the rest, close."""
        self.draining = True
        for site in list(runner.sites):
            await site.stop()  # the listening sockets close: new connections are refused
        # Connections already open stay until the end: a request on one is still answered
        # (a load balancer's in-flight retry, a readiness probe) and closes it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        await self.cut()
        await runner.cleanup()

    async def cut(self) -> None:
        """End every request still running (streams get their error event)."""
        self.cutting = True
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)


DRAIN = web.AppKey("drain", Drain)
