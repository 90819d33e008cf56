"""GET /v1/keys/usage: each gateway key's requests and tokens now, its budget left, and its
spend this budget period (per model, against its max_spend) from gateway.policy.limits.usage_report.

Guarded by the `[admin] key` (sent as `Authorization: Bearer ...`), not by a gateway key:
it shows every key's figures. Without an admin key configured the route answers 404.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from gateway.policy.keys import ADMIN_PATHS, KEYS
from gateway.policy.shared_state import STATE
from gateway.server.credentials import InvalidApiKey, presented_keys
from wire.errors import NotFound


async def keys_usage(request: web.Request) -> web.Response:
    ring = request.app[KEYS]
    if not ring.admin:
        raise NotFound(
            "The usage route is off: set [admin] key in gateway.toml to turn it on.",
            code="unknown_url",
        )
    if not any(ring.is_admin(value) for value in presented_keys(request)):
        raise InvalidApiKey("The usage route wants the admin key ([admin] key).")
    limiter = request.app[STATE].limiter
    # Together: with Redis unreachable, one timeout for all the keys, not one each.
    data = await asyncio.gather(*(limiter.usage(key) for key in ring.keys.values()))
    return web.Response(
        body=orjson.dumps({"object": "list", "data": data}), content_type="application/json"
    )


def add_routes(app: web.Application) -> None:
    (path,) = ADMIN_PATHS
    app.router.add_get(path, keys_usage)
