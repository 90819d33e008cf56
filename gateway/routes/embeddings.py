"""POST /v1/embeddings (a string or a list of inputs; float or base64; dimensions)."""

from __future__ import annotations

from aiohttp import web

from gateway.engine.call import Call, Prepared, natively
from gateway.engine.dispatcher import DISPATCHER
from gateway.server.bodies import read_body
from gateway.server.parsing import parse_request
from providers.base import Provider
from wire.ask import ask_of
from wire.operations import Operation

OPERATION = Operation.EMBEDDINGS


async def embeddings(request: web.Request) -> web.StreamResponse:
    parsed = parse_request(await read_body(request), OPERATION)

    def prepare(provider: Provider, model: str) -> Prepared:
        return natively(provider, OPERATION, model, parsed.body, False)

    call = Call(
        OPERATION,
        parsed.model,
        False,
        prepare,
        parsed.fallbacks,
        upstream_models=parsed.upstream_models,
        ask=ask_of(parsed.body),
    )
    return await request.app[DISPATCHER].dispatch(request, call)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/embeddings", embeddings)
