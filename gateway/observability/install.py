"""Observability wired into the application: request ids, the access log, the metrics.

The front door (`gateway.server.front_door`), the one middleware, notes each request's
arrival (the dispatcher's record and so TTFT start there) and gives it its id; once the
handler returned (for a stream, after its last byte) it calls `Finished.finished`, which
writes the access line and counts the response. The
dispatcher's own observations come through its event hooks (`gateway.observability.metrics`,
and `gateway.observability.tracing` when `[tracing]` is on), which `install` hands the app to
plug in, with the watch of the cooldown store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from gateway.config import Config
from gateway.engine.events import REQUEST_RECORD, Hooks
from gateway.engine.ports import Cooldowns
from gateway.observability import access_log
from gateway.observability.cooldown_watch import CooldownCollector, WatchedCooldowns
from gateway.observability.export import MetricsPage
from gateway.observability.labels import error_type
from gateway.observability.metrics import GatewayMetrics
from gateway.server import request_ids
from gateway.server.credentials import InvalidApiKey, presented_keys
from gateway.server.front_door import CLIENT_CLOSED
from wire.config_values import ConfigError, resolve_key

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

UNMATCHED = "unmatched"
FLUSH_SECONDS = 5.0  # the most a stop waits for the spans still queued to be exported


class Observers:
    """What `install` plugged in, for the app to hand the dispatcher: the event hooks (the
    metrics'), and `watch`, which wraps the cooldown store so that the gauge counts its rests
    (the store itself when metrics are off); and for the front door, `finished`: the access
    line and the response count of each request (None when both are off)."""

    def __init__(
        self,
        hooks: list[Hooks],
        watch: Callable[[Cooldowns], Cooldowns],
        finished: Finished | None,
    ) -> None:
        self.hooks = hooks
        self.watch = watch
        self.finished = finished


def install(
    app: web.Application, config: Config, key_name: Callable[[web.Request], str | None]
) -> Observers:
    """Request ids always; metrics and /metrics unless `[metrics] enabled = false`; the
    access log unless `[server] access_log = false`. `key_name`: the request's gateway key's
    name, for the line of a request that never reached the dispatcher."""
    metrics = None
    registry = None
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

    if config.tracing.enabled and not _sdk_disabled():
        hooks.append(_tracing(app, config, registry or CollectorRegistry()))

    lines = None
    if config.server.access_log:
        lines = access_log.AccessLog()
        app.on_cleanup.append(_at_cleanup(lines.flush))  # no line is lost at a clean stop
    finished = None if metrics is None and lines is None else Finished(metrics, lines, key_name)
    return Observers(hooks, watch, finished)


def _sdk_disabled() -> bool:
    """OTEL_SDK_DISABLED=true turns tracing off, as it does every OpenTelemetry SDK."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _tracing(app: web.Application, config: Config, registry: CollectorRegistry) -> Hooks:
    """The tracing hooks (OpenTelemetry is imported here, and only when tracing is on); the
    spans export drops counted in `registry`, and flushed at the app's cleanup."""
    try:
        from gateway.observability.trace_export import tracer_provider
        from gateway.observability.tracing import Tracing
    except ImportError as missing:
        raise ConfigError(
            f"{config.source}: tracing.enabled: needs the otel extra "
            f"(pip install 'gateway[otel]'): {missing}"
        ) from None
    dropped = Counter(
        "gateway_trace_spans_dropped",
        "Spans not exported: the export queue was full, or the collector failed to take them.",
        ("reason",),
        registry=registry,
    )

    def count(reason: str, spans: int) -> None:
        dropped.labels(reason).inc(spans)

    provider = tracer_provider(config.tracing, count)

    async def flush(app: web.Application) -> None:
        # The spans still queued, sent in a thread, waited for a few seconds at most: a
        # collector that does not answer would hold the stop up to the SDK's 30 s.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(provider.shutdown), FLUSH_SECONDS)

    app.on_cleanup.append(flush)
    return Tracing(config, provider)


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


class Finished:
    """What is written and counted once a request is answered (for a stream, after its last
    byte): its access line and its response count. The front door calls `finished`."""

    def __init__(
        self,
        metrics: GatewayMetrics | None,
        lines: access_log.AccessLog | None,
        key_name: Callable[[web.Request], str | None],
    ) -> None:
        self.metrics = metrics
        self.lines = lines
        self.key_name = key_name

    def finished(self, request: web.Request, status: int, arrived: float) -> None:
        record = request.get(REQUEST_RECORD)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else None
        if self.metrics is not None:
            self.metrics.responded(route or UNMATCHED, status)
        if self.lines is None:
            return
        ended = time.perf_counter()
        if record is not None:
            key, started = record.key, record.started
            failed = error_type(record) or _status_error(status)
            # The client's last byte, not the upstream's end of body the gateway waits after.
            ended = record.ended or ended
        else:
            key, started, failed = self.key_name(request), arrived, _status_error(status)
        self.lines.write(
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


def _status_error(status: int) -> str:
    if status == CLIENT_CLOSED:
        return "cancelled"
    return str(status) if status >= 400 else ""
