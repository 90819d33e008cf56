"""Keepalives before a stream's first content, so that a slow first token is no idle cut."""

from __future__ import annotations

import asyncio

from aiohttp import web


class Keepalive:
    """While a stream waits for its first content, SSE comments every `interval` seconds.

    Reasoning models can think for minutes before their first token, and an idle timeout in
    front of the gateway (a load balancer at 60 s) would cut that healthy stream. The first
    comment commits the response (200, SSE headers); comments carry no content, so the
    dispatcher may still fail over afterwards, and a failure of every attempt then becomes
    the error event. A timer, not a task, until it first fires: the common fast stream pays
    one call_later.
    """

    __slots__ = ("_comment", "_handle", "_interval", "_request", "_response", "_task")

    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        interval: float,
        comment: bytes,
    ):
        self._request = request
        self._response = response
        self._interval = interval
        self._comment = comment  # an SSE comment, or the client format's own (Anthropic's ping)
        self._task: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = loop.call_later(interval, self._start)

    def _start(self) -> None:
        self._handle = None
        self._task = asyncio.get_running_loop().create_task(self._ping())

    async def _ping(self) -> None:
        while True:
            if not self._response.prepared:
                await self._response.prepare(self._request)
            await self._response.write(self._comment)
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        """Stop pinging; returns once no ping write is under way (asked again after it was
        interrupted, it waits again)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.wait((task,))
            self._task = None
            if not task.cancelled():
                task.exception()  # a failed write means the client left; the pump sees it too
