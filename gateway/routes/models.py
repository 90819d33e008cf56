"""GET /v1/models (what the configured providers serve, where known) and GET /health."""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from gateway.app_keys import CONFIG
from gateway.config import MockProviderConfig


async def list_models(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    created = int(time.time())
    data = []
    for name, provider in config.providers.items():
        models = provider.models or (
            ["mock-model"] if isinstance(provider, MockProviderConfig) else []
        )
        data.extend(
            {"id": f"{name}/{model}", "object": "model", "created": created, "owned_by": name}
            for model in models
        )
    return web.Response(
        body=orjson.dumps({"object": "list", "data": data}), content_type="application/json"
    )


async def health(request: web.Request) -> web.Response:
    return web.Response(
        body=orjson.dumps({"status": "ok", "providers": sorted(request.app[CONFIG].providers)}),
        content_type="application/json",
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
