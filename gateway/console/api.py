"""The console's JSON routes, each usable on its own with the admin key:

GET /console/api/requests   the ring of finished requests (this process), newest first;
                            ?key=NAME ?model=TEXT ?status=ok|error|4xx|429 ?limit=N
GET /console/api/keys       each gateway key's use against its limits (gateway.policy.limits,
                            through the limiter: with Redis, every instance's sum)
GET /console/api/providers  each provider's last minutes (this process), and the keys and
                            targets resting now (the cooldown store: with Redis, shared)
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web

from gateway.config import Config
from gateway.console.admin import PRIVATE_HEADERS, require_admin
from gateway.console.health import ProviderHealth
from gateway.console.ring import Finished
from gateway.console.state import CONSOLE
from gateway.policy.keys import KEYS
from gateway.policy.routing import ROUTER, Router
from gateway.policy.shared_state import STATE
from gateway.server.config_key import CONFIG
from wire.errors import BadRequest

REQUESTS = "/console/api/requests"
KEYS_PATH = "/console/api/keys"
PROVIDERS = "/console/api/providers"
PATHS = frozenset({REQUESTS, KEYS_PATH, PROVIDERS})

_encoder = msgspec.json.Encoder()


def _answer(body: dict[str, Any]) -> web.Response:
    return web.Response(
        body=_encoder.encode(body), content_type="application/json", headers=PRIVATE_HEADERS
    )


async def recent_requests(request: web.Request) -> web.Response:
    require_admin(request)
    ring = request.app[CONSOLE].ring
    query = request.query
    limit = _limit(query.get("limit"), ring.size)
    matches = entry_filter(query.get("key"), query.get("model"), query.get("status"))
    found = [entry for entry in ring.newest(ring.size) if matches(entry)][:limit]
    return _answer(
        {
            "object": "list",
            "pid": os.getpid(),  # whose ring: each process (worker) keeps its own
            "capacity": ring.size,
            "last_id": ring.last_id,
            "data": found,
        }
    )


def _limit(text: str | None, most: int) -> int:
    if text is None:
        return most
    if not text.isdigit() or int(text) < 1:
        raise BadRequest("'limit' must be a positive whole number.", param="limit")
    return min(int(text), most)


def entry_filter(
    key: str | None, model: str | None, status: str | None
) -> Callable[[Finished], bool]:
    """The Live view's filters (its page applies the same to what the feed brings): the key's
    name exactly, a part of the model asked or served (any case), and a status: `ok`,
    `error` (any failure, a client that left included), a class (`4xx`) or a code (`429`)."""
    wanted = (model or "").lower()
    status_test = _status_test(status)

    def matches(entry: Finished) -> bool:
        if key and entry.key != key:
            return False
        if wanted and not any(wanted in name.lower() for name in (entry.model, entry.served or "")):
            return False
        return status_test(entry)

    return matches


def _status_test(status: str | None) -> Callable[[Finished], bool]:
    text = (status or "").strip().lower()
    if not text:
        return lambda entry: True
    if text == "ok":
        return lambda entry: not entry.error
    if text == "error":
        return lambda entry: bool(entry.error)
    if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
        hundred = int(text[0])
        return lambda entry: entry.status // 100 == hundred
    if len(text) == 3 and text.isdigit():
        code = int(text)
        return lambda entry: entry.status == code
    raise BadRequest(
        "'status' must be ok, error, a class such as 4xx, or a code such as 429.", param="status"
    )


async def keys_state(request: web.Request) -> web.Response:
    require_admin(request)
    ring = request.app[KEYS]
    limiter = request.app[STATE].limiter
    keys = list(ring.keys.values())
    # The usage route's own figures (gateway.policy.limits.usage_report), together: with Redis
    # unreachable, one timeout for all the keys, not one each.
    reports = await asyncio.gather(*(limiter.usage(key) for key in keys))
    data = []
    for key, report in zip(keys, reports, strict=True):
        # The report carries the money too: spend_usd and max_spend_usd (gateway.policy.limits).
        data.append({**report, "models": key.config.models})
    shared = request.app[CONFIG].state.redis_url is not None
    return _answer({"object": "list", "pid": os.getpid(), "shared": shared, "data": data})


async def providers_state(request: web.Request) -> web.Response:
    require_admin(request)
    config = request.app[CONFIG]
    router = request.app[ROUTER]
    health = request.app[CONSOLE].health
    now = time.time()
    ids = rest_ids(config, router, health)
    rests = await request.app[STATE].cooldowns.resting(ids) if ids else {}
    providers = [
        {
            "name": name,
            "type": _type_of(config, name),
            "keys": len(group.targets),
            "models": config.providers[name].models,
            **health.report(name, now),
        }
        for name, group in router.groups.items()
    ]
    resting = []
    for id, rest in sorted(rests.items(), key=lambda item: item[1].since):
        kind, provider = kind_of(id)
        why = (
            health.target_failures.get(id)
            if kind == "target"
            else health.key_refusals.get(provider)
        )
        resting.append(
            {
                "id": id,
                "kind": kind,
                "provider": provider,
                "since": rest.since,
                "until": rest.until,
                "seconds_left": round(max(0.0, rest.until - now), 1),
                "why": why,
            }
        )
    return _answer(
        {
            "pid": os.getpid(),
            "shared": config.state.redis_url is not None,
            "now": now,
            "providers": providers,
            "resting": resting,
        }
    )


def rest_ids(config: Config, router: Router, health: ProviderHealth) -> list[str]:
    """What may be resting: every key of every provider (`provider#n`), every target the
    config names, and every target this process saw fail (targets named only by requests)."""
    ids: dict[str, None] = {}
    for group in router.groups.values():
        ids.update(dict.fromkeys(target.key_id for target in group.targets))
    for alias in config.models.values():
        ids.update(dict.fromkeys(target.model for target in alias.targets))
    for name, provider in config.providers.items():
        ids.update(dict.fromkeys(f"{name}/{model}" for model in provider.models))
    ids.update(dict.fromkeys(health.target_failures))
    return list(ids)


def kind_of(id: str) -> tuple[str, str]:
    """("target" or "key", its provider): targets are provider/model, keys provider#n."""
    if "/" in id:
        return "target", id.partition("/")[0]
    return "key", id.rpartition("#")[0] or id


def _type_of(config: Config, name: str) -> str:
    tag = type(config.providers[name]).__struct_config__.tag
    return tag if isinstance(tag, str) else name


def add_routes(app: web.Application) -> None:
    app.router.add_get(REQUESTS, recent_requests)
    app.router.add_get(KEYS_PATH, keys_state)
    app.router.add_get(PROVIDERS, providers_state)
