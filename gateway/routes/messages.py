"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API, inbound.

The Anthropic SDK and Claude Code (`ANTHROPIC_BASE_URL`) talk to the gateway in their own
format. To an Anthropic provider the request passes through unchanged but for the model (with
the client's `anthropic-beta` and `anthropic-version` headers) and the stream comes back as
the upstream sent it; to any other provider it is translated to chat and the answer back into
Anthropic's events (`formats/anthropic/from_chat.py`). Routing, fallbacks, keys, limits and
metrics apply as on the OpenAI routes; errors come in Anthropic's shape.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from formats.anthropic.count_tokens import estimate_input_tokens
from formats.anthropic.error_shape import anthropic_error_body, anthropic_error_status
from formats.anthropic.from_chat import MessagesFromChat, message_from_chat
from formats.anthropic.probe import MESSAGES_STREAM
from formats.anthropic.request import messages_to_chat, with_client_headers
from formats.stored_answer import MESSAGES_FORM
from gateway.engine.call import Call, Prepared, through_chat, unchanged
from gateway.engine.dispatcher import DISPATCHER, SERVED_BY
from gateway.policy.keys import GATEWAY_KEY
from gateway.policy.routing import ROUTER
from gateway.server import error_middleware
from gateway.server.bodies import read_body
from gateway.server.error_middleware import add_route, unknown_path
from gateway.server.parsing import parse_request
from providers.base import Provider
from wire.ask import ask_of
from wire.errors import GatewayError
from wire.operations import Operation

# On a token count the gateway estimated: "estimate" (a provider's own count has none).
TOKEN_COUNT = "x-gateway-token-count"
JSON = "application/json"
# Before the first content an Anthropic stream sends message_start, pings and the start of
# its first block (a tool_use block's input follows in deltas).
MESSAGES_PREAMBLE = frozenset({"message_start", "ping", "content_block_start"})


async def create_message(request: web.Request) -> web.StreamResponse:
    parsed = parse_request(await read_body(request), Operation.MESSAGES)
    stream = parsed.stream
    chat_body = None  # translated once, for the first provider that needs chat

    def prepare(provider: Provider, model: str) -> Prepared:
        nonlocal chat_body
        if Operation.MESSAGES in provider.operations:  # Anthropic: passed through
            upstream = provider.build_request(Operation.MESSAGES, model, parsed.body, stream)
            upstream = with_client_headers(upstream, request.headers)
            if stream:
                translator = provider.stream_translator(Operation.MESSAGES, model)
                return Prepared(upstream, translator)
            return Prepared(upstream, translate=unchanged)
        if chat_body is None:
            chat_body = messages_to_chat(parsed.body)
        return through_chat(
            provider,
            model,
            dict(chat_body),
            stream,
            lambda: MessagesFromChat(model),
            message_from_chat,
        )

    call = Call(
        Operation.MESSAGES,
        parsed.model,
        stream,
        prepare,
        parsed.fallbacks,
        upstream_models=parsed.upstream_models,
        stream_format=MESSAGES_STREAM,
        ask=ask_of(parsed.body),
        stored=MESSAGES_FORM,
        body=parsed.body,
    )
    return await request.app[DISPATCHER].dispatch(request, call)


async def count_tokens(request: web.Request) -> web.StreamResponse:
    """Passed through when the provider that would serve the model counts tokens itself
    (Anthropic); for any other, estimated by the gateway (`formats/anthropic/count_tokens.py`),
    never by calling a model, and said so: `x-gateway-token-count: estimate`."""
    parsed = parse_request(await read_body(request), Operation.COUNT_TOKENS)
    key = request.get(GATEWAY_KEY)
    if key is not None:
        key.check_models([parsed.model, *parsed.fallbacks])
    first = request.app[ROUTER].plan(parsed.model, Operation.MESSAGES, parsed.fallbacks)[0]
    if Operation.COUNT_TOKENS not in first.group.provider.operations:
        counted = {"input_tokens": estimate_input_tokens(parsed.body)}
        headers = {TOKEN_COUNT: "estimate", SERVED_BY: first.label}
        return web.Response(body=orjson.dumps(counted), headers=headers, content_type=JSON)

    def prepare(provider: Provider, model: str) -> Prepared:
        upstream = provider.build_request(Operation.COUNT_TOKENS, model, parsed.body, False)
        return Prepared(with_client_headers(upstream, request.headers), translate=unchanged)

    call = Call(
        Operation.COUNT_TOKENS,
        parsed.model,
        False,
        prepare,
        parsed.fallbacks,
        upstream_models=parsed.upstream_models,
    )
    return await request.app[DISPATCHER].dispatch(request, call)


def error_response(error: GatewayError) -> web.Response:
    """Anthropic's error shape: `{"type": "error", "error": {"type", "message"}}`."""
    return error_middleware.error_response(
        error, anthropic_error_body(error), anthropic_error_status(error)
    )


def add_routes(app: web.Application) -> None:
    add_route(app, "POST", "/v1/messages", create_message, error_response)
    add_route(app, "POST", "/v1/messages/count_tokens", count_tokens, error_response)
    # Any other path of the API (batches, ...), or with a byte no route takes: a 404 in its shape.
    add_route(app, "POST", r"/v1/messages{rest:[\s\S]+}", unknown_path, error_response)
