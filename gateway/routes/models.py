"""GET /v1/models (aliases and the models the providers list) and /v1/models/{id}."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from gateway.config import Config
from gateway.server.config_key import CONFIG
from providers.mock import MockProviderConfig
from wire.errors import NotFound

# What an alias is "owned by" in the model list: the gateway, not one provider.
ALIAS_OWNER = "gateway"


def _models(config: Config) -> dict[str, str]:
    """Every model id the gateway can name -> its owner: aliases, then provider/model."""
    models = dict.fromkeys(config.models, ALIAS_OWNER)
    for name, provider in config.providers.items():
        listed = provider.models or (
            ["mock-model"] if isinstance(provider, MockProviderConfig) else []
        )
        models.update((f"{name}/{model}", name) for model in listed)
    return models


def _model(id: str, owner: str, created: int) -> dict[str, Any]:
    return {"id": id, "object": "model", "created": created, "owned_by": owner}


async def list_models(request: web.Request) -> web.Response:
    created = int(time.time())
    data = [_model(id, owner, created) for id, owner in _models(request.app[CONFIG]).items()]
    return web.Response(
        body=orjson.dumps({"object": "list", "data": data}), content_type="application/json"
    )


async def retrieve_model(request: web.Request) -> web.Response:
    """One model, as the SDK's `models.retrieve` asks for it (the id may hold slashes).

    A provider that lists no `models` may serve any model name: its `provider/...` is known.
    """
    config = request.app[CONFIG]
    id = request.match_info["id"]
    owner = _models(config).get(id)
    provider, sep, model = id.partition("/")
    if owner is None and sep and model:
        table = config.providers.get(provider)
        # A provider that lists no models (or the mock, which answers any) may serve any.
        if table is not None and (not table.models or isinstance(table, MockProviderConfig)):
            owner = provider
    if owner is None:
        raise NotFound(
            f"The model {id!r} does not exist: it is no alias, and no configured provider "
            "lists it.",
            param="model",
            code="model_not_found",
        )
    return web.Response(
        body=orjson.dumps(_model(id, owner, int(time.time()))), content_type="application/json"
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{id:.+}", retrieve_model)
