"""The console's one check: every data route wants the `[admin] key`, compared in constant
time (`KeyRing.is_admin`), as GET /v1/keys/usage does. The page and its assets need no key:
they hold no data."""

from __future__ import annotations

from aiohttp import web

from gateway.policy.keys import KEYS
from gateway.server.credentials import InvalidApiKey, presented_keys

# Admin data is nobody's to cache or to sniff as another type.
PRIVATE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def require_admin(request: web.Request) -> None:
    ring = request.app[KEYS]
    if not any(ring.is_admin(value) for value in presented_keys(request)):
        raise InvalidApiKey(
            "The console's routes want the admin key ([admin] key) as 'Authorization: Bearer KEY'."
        )
