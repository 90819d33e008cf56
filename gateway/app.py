"""Build the aiohttp application and serve it: routes, the error middleware, the upstream client."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway import observe
from gateway.app_keys import CONFIG, DISPATCHER, HTTP, KEYS, ROUTER, STATE
from gateway.auth import KeyRing, auth_middleware
from gateway.config import Config
from gateway.dispatch import Dispatcher
from gateway.errors import error_middleware
from gateway.routes import audio, chat, embeddings, models, responses, usage
from gateway.routing import Router
from gateway.state import SharedState
from gateway.upstream import HttpTransport


def create_app(config: Config) -> web.Application:
    keys = KeyRing(config)
    app = web.Application(
        middlewares=[error_middleware, auth_middleware(keys)],
        client_max_size=config.server.max_request_bytes,
    )
    http = HttpTransport()
    state = SharedState(config.state)
    app[CONFIG] = config
    app[HTTP] = http
    app[KEYS] = keys
    app[STATE] = state
    router = Router(config, http)
    app[ROUTER] = router
    app[DISPATCHER] = Dispatcher(router, state.cooldowns, config.routing, state.limiter)
    observe.install(app, config, app[DISPATCHER])  # request ids, access log, metrics
    chat.add_routes(app)
    models.add_routes(app)
    responses.add_routes(app)
    embeddings.add_routes(app)
    audio.add_routes(app)
    usage.add_routes(app)
    app.cleanup_ctx.append(_clients)
    return app


async def _clients(app: web.Application) -> AsyncIterator[None]:
    await app[HTTP].start()
    yield
    await app[HTTP].close()
    await app[STATE].close()


async def start(config: Config, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Serve `config` on host:port (0: any free port); returns the runner and the base URL."""
    runner = web.AppRunner(
        create_app(config),
        # A client that disconnects cancels its handler, and so its upstream request.
        handler_cancellation=True,
        access_log=None,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return runner, f"http://{shown}:{bound_port}"
