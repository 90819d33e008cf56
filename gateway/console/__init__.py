"""The console: GET /console, a page in the browser over this gateway process (Live requests,
Keys, Providers, a Playground), and the JSON routes behind it. On when an `[admin] key` is set
(`[console] enabled = false` turns it off); every data route wants that key.

`install` adds the routes and gives the app a recorder for the dispatcher's event hooks
(`gateway.console.recorder`: after an attempt and after a request, nothing per chunk); `paths`
are the routes the gateway-key check lets through, to check the admin key themselves.
"""

from __future__ import annotations

from aiohttp import web

from gateway.config import Config
from gateway.console import api, feed, page
from gateway.console.recorder import ConsoleRecorder
from gateway.console.state import CONSOLE, ConsoleState
from gateway.engine.events import Hooks
from gateway.policy.keys import KEYS

PATHS = page.PATHS | api.PATHS | {feed.PATH}


def paths(config: Config, admin_key: str | None) -> frozenset[str]:
    """The console's routes when it is on (`admin_key`: the resolved `[admin] key`)."""
    return PATHS if config.console.on(admin_key) else frozenset()


def install(app: web.Application, config: Config) -> list[Hooks]:
    """The console's routes, when it is on; the event hooks that fill it (none when off)."""
    if not config.console.on(app[KEYS].admin):
        return []
    console = app[CONSOLE] = ConsoleState(config.console.recent)
    page.add_routes(app)
    api.add_routes(app)
    feed.add_routes(app)
    return [ConsoleRecorder(console.ring, console.health)]
