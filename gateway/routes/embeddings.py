"""POST /v1/embeddings (a string or a list of inputs; float or base64; dimensions)."""

from __future__ import annotations

from aiohttp import web

from gateway.app_keys import ROUTER
from gateway.parsing import parse_request
from gateway.relay import relay_once
from providers.base import Operation


async def embeddings(request: web.Request) -> web.StreamResponse:
    parsed = parse_request(await request.read(), Operation.EMBEDDINGS)
    target, model = request.app[ROUTER].resolve(parsed.model, Operation.EMBEDDINGS)
    provider = target.provider
    upstream_request = provider.build_request(Operation.EMBEDDINGS, model, parsed.body, False)
    return await relay_once(
        target,
        upstream_request,
        lambda body: provider.translate_response(Operation.EMBEDDINGS, model, body),
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/embeddings", embeddings)
