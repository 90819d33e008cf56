"""Observability wired into the application: request ids, the access log, the metrics.

One middleware, outermost, sees every request: it notes the arrival (the dispatcher's
record and so TTFT start there), gives the request its id, and once the handler returned
(for a stream, after its last byte) writes the access line and counts the response. The
dispatcher's own observations come through its event hooks (`gateway.observability.metrics`),
which `install` hands the app to plug in, with the watch of the cooldown store.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from gateway.config import Config
from gateway.engine.events import ARRIVED, REQUEST_RECORD, Hooks
from gateway.engine.ports import Cooldowns
from gateway.observability import access_log
from gateway.observability.cooldown_watch import CooldownCollector, WatchedCooldowns
from gateway.observability.export import MetricsPage
from gateway.observability.labels import error_type
from gateway.observability.metrics import GatewayMetrics
from gateway.policy.keys import InvalidApiKey, presented_keys
from gateway.server import request_ids
from wire.config_values import resolve_key

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CLIENT_CLOSED = 499  # nginx's status for a request whose client left before any answer
UNMATCHED = "unmatched"


class Observers:
    """What `install` plugged in, for the app to hand the dispatcher: the event hooks (the
    metrics'), and `watch`, which wraps the cooldown store so that the gauge counts its rests
    (the store itself when metrics are off)."""

    def __init__(self, hooks: list[Hooks], watch: Callable[[Cooldowns], Cooldowns]) -> None:
        self.hooks = hooks
        self.watch = watch


def install(
    app: web.Application, config: Config, key_name: Callable[[web.Request], str | None]
) -> Observers:
    """Request ids always; metrics and /metrics unless `[metrics] enabled = false`; the
    access log unless `[server] access_log = false`. `key_name`: the request's gateway key's
    name, for the line of a request that never reached the dispatcher."""
    metrics = None
    hooks: list[Hooks] = []
    if config.metrics.enabled:
        registry = CollectorRegistry()
        metrics = GatewayMetrics(config, registry)
        hooks.append(metrics)
        watched = WatchedCooldowns()
        watch: Callable[[Cooldowns], Cooldowns] = watched.watching
        gauge = CooldownCollector(watched, config.providers)
        registry.register(gauge)
        page = MetricsPage(registry, [gauge], metrics.fold, config.metrics.cache_seconds)
        app.router.add_get("/metrics", _guarded(page.handle, config.metrics.key))
        app.on_cleanup.append(_at_cleanup(metrics.fold))  # into the multiprocess files
        app.on_cleanup.append(_closing(page))
    else:
        watch = _unwatched

    lines = None
    if config.server.access_log:
        lines = access_log.AccessLog()
        app.on_cleanup.append(_at_cleanup(lines.flush))  # no line is lost at a clean stop
    app.middlewares.insert(0, middleware(metrics, lines, key_name))
    app.on_response_prepare.append(request_ids.on_response_prepare)
    return Observers(hooks, watch)


def _unwatched(store: Cooldowns) -> Cooldowns:
    return store


def _at_cleanup(run: Callable[[], None]) -> Callable[[web.Application], Awaitable[None]]:
    async def cleanup(app: web.Application) -> None:
        run()

    return cleanup


def _guarded(handle: Handler, key: str | None) -> Handler:
    """`handle`, behind the metrics key when one is configured: a scrape is no request of a
    gateway key's, and a page of key names and models is no one else's business."""
    wanted = resolve_key(key).value if key else None
    if not key:
        return handle

    async def guarded(request: web.Request) -> web.StreamResponse:
        presented = presented_keys(request)
        if not wanted or not any(
            hmac.compare_digest(wanted.encode(), value.encode("utf-8", "surrogateescape"))
            for value in presented
        ):
            raise InvalidApiKey("/metrics wants the metrics key ([metrics] key) as a Bearer token.")
        return await handle(request)

    return guarded


def _closing(page: MetricsPage) -> Callable[[web.Application], Awaitable[None]]:
    async def cleanup(app: web.Application) -> None:
        await page.close()

    return cleanup


def middleware(
    metrics: GatewayMetrics | None,
    lines: access_log.AccessLog | None,
    key_name: Callable[[web.Request], str | None],
) -> Middleware:

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        arrived = time.perf_counter()
        request[ARRIVED] = arrived
        request_ids.assign(request)
        if metrics is None and lines is None:
            return await handler(request)
        try:
            response = await handler(request)
        except asyncio.CancelledError:  # the client left; a stream's 200 may have gone out
            _finished(request, request.get(request_ids.SENT_STATUS, CLIENT_CLOSED), arrived)
            raise
        except web.HTTPException as http:  # not an error (a redirect): the error middleware
            _finished(request, http.status, arrived)  # answers every error itself
            raise
        _finished(request, response.status, arrived)
        return response

    def _finished(request: web.Request, status: int, arrived: float) -> None:
        record = request.get(REQUEST_RECORD)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else None
        if metrics is not None:
            metrics.responded(route or UNMATCHED, status)
        if lines is None:
            return
        ended = time.perf_counter()
        if record is not None:
            key, started = record.key, record.started
            failed = error_type(record) or _status_error(status)
            # The client's last byte, not the upstream's end of body the gateway waits after.
            ended = record.ended or ended
        else:
            key, started, failed = key_name(request), arrived, _status_error(status)
        lines.write(
            access_log.line_of(
                time.time(),
                request[request_ids.REQUEST_ID],
                request.method,
                route or request.path[:256],
                status,
                record,
                key,
                ended - started,
                failed,
            )
        )

    return observe


def _status_error(status: int) -> str:
    if status == CLIENT_CLOSED:
        return "cancelled"
    return str(status) if status >= 400 else ""
