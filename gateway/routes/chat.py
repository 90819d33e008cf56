"""POST /v1/chat/completions and POST /v1/completions, streamed and not."""

from __future__ import annotations

from aiohttp import web

from gateway.app_keys import ROUTER
from gateway.parsing import parse_request
from gateway.relay import relay_once, relay_stream
from providers.base import Operation


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, Operation.CHAT)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, Operation.COMPLETIONS)


async def _complete(request: web.Request, operation: Operation) -> web.StreamResponse:
    parsed = parse_request(await request.read(), operation)
    target, model = request.app[ROUTER].resolve(parsed.model, operation)
    upstream_request = target.provider.build_request(operation, model, parsed.body, parsed.stream)
    provider = target.provider
    if parsed.stream:
        translator = provider.stream_translator(operation, model)
        return await relay_stream(request, target, upstream_request, translator)
    return await relay_once(
        target, upstream_request, lambda body: provider.translate_response(operation, model, body)
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
