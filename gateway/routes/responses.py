"""POST /v1/responses, streamed (event-based SSE, no [DONE]) and not.

A provider that serves the Responses API itself (OpenAI) gets the request as it came and its
event stream is relayed as is. Any other provider is reached through its chat API, and its
answer is turned into the Responses events (`providers/responses_bridge.py`).
"""

from __future__ import annotations

from aiohttp import web

from gateway.app_keys import ROUTER
from gateway.parsing import parse_request
from gateway.relay import relay_once, relay_stream
from providers.base import Operation
from providers.responses_bridge import (
    ResponsesFromChat,
    response_echo,
    response_from_chat,
    responses_to_chat,
)


async def create_response(request: web.Request) -> web.StreamResponse:
    parsed = parse_request(await request.read(), Operation.RESPONSES)
    target, model = request.app[ROUTER].resolve(parsed.model, Operation.RESPONSES)
    provider = target.provider
    if Operation.RESPONSES in provider.operations:
        upstream_request = provider.build_request(
            Operation.RESPONSES, model, parsed.body, parsed.stream
        )
        if parsed.stream:
            translator = provider.stream_translator(Operation.RESPONSES, model)
            return await relay_stream(request, target, upstream_request, translator)
        return await relay_once(
            target,
            upstream_request,
            lambda body: provider.translate_response(Operation.RESPONSES, model, body),
        )
    chat_body = responses_to_chat(parsed.body, provider.name)
    echo = response_echo(parsed.body)
    upstream_request = provider.build_request(Operation.CHAT, model, chat_body, parsed.stream)
    if parsed.stream:
        bridge = ResponsesFromChat(provider.stream_translator(Operation.CHAT, model), model, echo)
        return await relay_stream(request, target, upstream_request, bridge)
    return await relay_once(
        target,
        upstream_request,
        lambda body: response_from_chat(
            provider.translate_response(Operation.CHAT, model, body), echo
        ),
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/responses", create_response)
