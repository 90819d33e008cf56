"""POST /v1/chat/completions and POST /v1/completions, streamed and not."""

from __future__ import annotations

from aiohttp import web

from formats.stored_answer import CHAT_FORM
from gateway.engine.call import Call, Prepared, natively
from gateway.engine.dispatcher import DISPATCHER
from gateway.server.bodies import read_body
from gateway.server.parsing import parse_request
from providers.base import Provider
from wire.ask import ask_of
from wire.operations import Operation


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, Operation.CHAT)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, Operation.COMPLETIONS)


async def _complete(request: web.Request, operation: Operation) -> web.StreamResponse:
    parsed = parse_request(await read_body(request), operation)

    def prepare(provider: Provider, model: str) -> Prepared:
        return natively(provider, operation, model, parsed.body, parsed.stream)

    call = Call(
        operation,
        parsed.model,
        parsed.stream,
        prepare,
        parsed.fallbacks,
        upstream_models=parsed.upstream_models,
        ask=ask_of(parsed.body),
        # Legacy completions answer text completions: not a form the cache stores.
        stored=CHAT_FORM if operation is Operation.CHAT else None,
        body=parsed.body,
    )
    return await request.app[DISPATCHER].dispatch(request, call)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
