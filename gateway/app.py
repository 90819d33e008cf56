"""Build the aiohttp application and serve it: routes, the error middleware, the upstream client."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway import redact
from gateway.app_keys import CONFIG, HTTP, ROUTER
from gateway.config import Config
from gateway.errors import error_middleware
from gateway.routes import audio, chat, embeddings, models, responses
from gateway.routing import Router
from gateway.upstream import HttpTransport


def create_app(config: Config) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware], client_max_size=config.server.max_request_bytes
    )
    redact.add_config_secrets(config)
    http = HttpTransport(max_body_bytes=config.server.max_upstream_bytes)
    app[CONFIG] = config
    app[HTTP] = http
    app[ROUTER] = Router(config, http)
    chat.add_routes(app)
    models.add_routes(app)
    responses.add_routes(app)
    embeddings.add_routes(app)
    audio.add_routes(app)
    app.cleanup_ctx.append(_upstream_client)
    return app


async def _upstream_client(app: web.Application) -> AsyncIterator[None]:
    await app[HTTP].start()
    yield
    await app[HTTP].close()


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
