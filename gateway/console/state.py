"""What the console's routes share in one process: the ring, the providers' windows, and the
feeds open now."""

from __future__ import annotations

from aiohttp import web

from gateway.console.health import ProviderHealth
from gateway.console.ring import RequestRing


class ConsoleState:
    def __init__(self, recent: int) -> None:
        self.ring = RequestRing(recent)
        self.health = ProviderHealth()
        self.feeds = 0  # open feeds (each is a long response): capped by gateway.console.feed


CONSOLE = web.AppKey("console", ConsoleState)
