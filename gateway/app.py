"""Build the aiohttp application and serve it: the middlewares, the policies plugged into the
engine's ports, the observers, the routes, the upstream client."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

from aiohttp import web

from gateway import console
from gateway.cache.build import response_cache
from gateway.config import Config
from gateway.engine.dispatcher import DISPATCHER, Dispatcher
from gateway.engine.held import HeldBytes
from gateway.engine.transport.upstream_client import HTTP, UpstreamClient
from gateway.observability import install as observe
from gateway.policy.admission import KeyLimits, key_name
from gateway.policy.keys import ADMIN_PATHS, KEYS, KeyRing, auth_check
from gateway.policy.pricing import Prices
from gateway.policy.routing import ROUTER, Router
from gateway.policy.shared_state import STATE, SharedState
from gateway.routes import (
    audio,
    chat,
    embeddings,
    generate_content,
    key_usage,
    messages,
    models,
    probes,
    responses,
)
from gateway.server import config_secrets, fdlimit, guards, heap
from gateway.server.client_connection import ClientLimits
from gateway.server.config_key import CONFIG
from gateway.server.cors import cors_check
from gateway.server.drain import DRAIN, Drain
from gateway.server.front_door import front_door, response_head
from gateway.server.heap import HEAP, HeapTrimmer
from gateway.server.listener import ConnectionCap, GatewaySite

log = logging.getLogger("gateway")


def create_app(config: Config, host: str | None = None) -> web.Application:
    """The application for `config`, listening on `host` (default: the config's), which
    decides which Host names it answers."""
    server = config.server
    keys = KeyRing(config)
    drain = Drain()
    app = web.Application(client_max_size=server.max_request_bytes)
    config_secrets.add_config_secrets(config)
    http = UpstreamClient(server.max_upstream_bytes, lean=server.upstream_client == "lean")
    state = SharedState(config.state)
    app[CONFIG] = config
    app[DRAIN] = drain
    app[HTTP] = http
    app[KEYS] = keys
    app[STATE] = state
    router = Router(config, http)
    app[ROUTER] = router
    heap.map_large_allocations()
    trimmer = app[HEAP] = HeapTrimmer()
    held = HeldBytes(server.held_bytes_limit, on_release=trimmer.freed)
    prices = Prices(config)
    observers = observe.install(app, config, key_name)  # access log, metrics
    # One middleware and one response-head hook for every request (see front_door).
    checks = [
        cors_check(server.cors_origins),
        *guards.request_checks(server, server.host if host is None else host),
        auth_check(
            keys, _forwards_client_keys(config), ADMIN_PATHS | console.paths(config, keys.admin)
        ),
    ]
    app.middlewares.append(front_door(observers.finished, drain, checks))
    app.on_response_prepare.append(response_head(bool(server.cors_origins), drain))
    console_hooks = console.install(app, config)  # GET /console, when an admin key is set
    # The engine's ports, each plugged with its policy: routing, the cooldowns (watched by
    # the metrics' gauge), the gateway keys' limits, the drain; and the observers' hooks.
    prices = Prices(config)
    app[DISPATCHER] = Dispatcher(
        router,
        observers.watch(state.cooldowns),
        config.routing,
        KeyLimits(state.limiter, prices),
        held,
        hooks=[*observers.hooks, *console_hooks],
        drain=drain,
        pricing=prices,  # every answered request's cost, on its record
        cache=response_cache(config.cache, state, prices),
    )
    chat.add_routes(app)
    models.add_routes(app)
    probes.add_routes(app)
    responses.add_routes(app)
    embeddings.add_routes(app)
    audio.add_routes(app)
    key_usage.add_routes(app)
    messages.add_routes(app)
    generate_content.add_routes(app)
    app.cleanup_ctx.append(_clients)
    return app


def _forwards_client_keys(config: Config) -> bool:
    return any(getattr(p, "forward_client_key", False) for p in config.providers.values())


async def _clients(app: web.Application) -> AsyncIterator[None]:
    await app[HTTP].start()
    await _say_if_redis_unreachable(app[STATE], app[CONFIG])
    yield
    await app[HTTP].close()
    await app[STATE].close()
    await app[HEAP].close()


async def _say_if_redis_unreachable(state: SharedState, config: Config) -> None:
    problem = await state.unreachable()
    if problem is None:
        return
    then = (
        'every request is answered 503 (on_redis_error = "closed") and /ready is 503'
        if state.fails_closed
        else 'requests are served without limits (on_redis_error = "open")'
    )
    log.warning(
        "%s: [state] redis_url cannot be reached (%s): until it can, %s",
        config.source,
        problem,
        then,
    )


async def start(
    config: Config, host: str, port: int, sockets: list[socket.socket] | None = None
) -> tuple[web.AppRunner, str]:
    """Serve `config` on host:port (0: any free port), or on listening `sockets` a supervisor
    bound (every worker accepts from the same ones); returns the runner and the base URL."""
    warning = None if config.keys else guards.exposure_warning(host)
    if warning:
        log.warning(warning)
    return await serve_app(create_app(config, host), config, host, port, sockets)


async def serve_app(
    app: web.Application,
    config: Config,
    host: str,
    port: int,
    sockets: list[socket.socket] | None = None,
) -> tuple[web.AppRunner, str]:
    """Serve a built app on host:port; returns the runner and the base URL."""
    server = config.server
    runner = web.AppRunner(
        app,
        # A client that disconnects cancels its handler, and so its upstream request.
        handler_cancellation=True,
        access_log=None,
    )
    await runner.setup()
    limits = ClientLimits(
        header_timeout=server.header_timeout,
        body_timeout=server.body_timeout,
        min_body_rate=server.min_body_rate,
        idle_timeout=server.idle_timeout,
    )
    try:
        most = fdlimit.connection_cap(server.max_connections, fdlimit.open_file_limit())
        cap = ConnectionCap(runner, most, limits)
        await GatewaySite(runner, host, port, cap, sockets, app[DRAIN].broken.set).start()
    except BaseException:
        await runner.cleanup()
        raise
    app[DRAIN].ready = True
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return runner, f"http://{shown}:{bound_port}"
