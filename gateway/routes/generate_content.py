"""POST /v1beta/models/{model}:generateContent, :streamGenerateContent and :countTokens.

Gemini's API, inbound. `{model}` is an alias or `provider/model` (the slash as is, or as %2F);
`/v1beta/{provider}/{model}:...` works too, as `@ai-sdk/google` puts a model id with a slash in
the path without `models/`; so do `/v1alpha/` and `/v1/models/`. The body's fields are read in
either proto-JSON spelling (`formats/gemini/fields.py`). To a Gemini provider the request
passes through and its stream comes back as sent; to any other it is translated to chat and
the answer back into GenerateContentResponses (`formats/gemini/from_chat.py`). `?alt=sse`
streams SSE; without it, Gemini's JSON array, object by object. countTokens passes through to
a Gemini provider; for any other it is estimated offline (`formats/gemini/count_tokens.py`) and
the answer says so (`x-gateway-token-count: estimate`). Errors come in Gemini's shape.
"""

from __future__ import annotations

from aiohttp import web

from formats.gemini.count_tokens import estimate_count_tokens
from formats.gemini.error_shape import gemini_error_body
from formats.gemini.fields import COUNT_TOKENS_REQUEST, GENERATE_CONTENT_REQUEST, camel_case
from formats.gemini.framing import JsonArray
from formats.gemini.from_chat import GeminiFromChat, gemini_response_from_chat
from formats.gemini.probe import gemini_stream
from formats.gemini.request import gemini_to_chat
from formats.stored_answer import gemini_form
from gateway.engine.call import Call, Prepared, natively, through_chat, unchanged
from gateway.engine.dispatcher import DISPATCHER
from gateway.policy.keys import GATEWAY_KEY
from gateway.policy.routing import ROUTER
from gateway.server import error_middleware
from gateway.server.bodies import read_body
from gateway.server.error_middleware import add_route, unknown_path
from gateway.server.parsing import decode_object
from providers.base import Provider
from wire.ask import ask_of
from wire.errors import BadRequest, GatewayError, NotFound
from wire.operations import Operation

# Every POST under these is Gemini's (its errors too); `/v1/` is OpenAI's but for
# `models/...`.
PATH_PREFIXES = ("/v1beta/", "/v1alpha/", "/v1/models/")
_METHODS = {"generateContent": False, "streamGenerateContent": True, "countTokens": False}
# On a countTokens answer the gateway computed itself: the count is an estimate.
TOKEN_COUNT_HEADER = "x-gateway-token-count"


async def gemini(request: web.Request) -> web.StreamResponse:
    model, _, method = request.match_info["target"].rpartition(":")
    model = model.removeprefix("models/")
    if method not in _METHODS or not model:
        raise NotFound(
            f"Unknown method {method!r}: use models/MODEL:generateContent, "
            ":streamGenerateContent or :countTokens.",
        )
    if method == "countTokens":
        return await count_tokens(request, model)
    return await generate(request, model, _METHODS[method])


async def generate(request: web.Request, model: str, stream: bool) -> web.StreamResponse:
    sse = stream and request.query.get("alt") == "sse"
    body = camel_case(decode_object(await read_body(request)), GENERATE_CONTENT_REQUEST)
    if "contents" not in body:
        raise BadRequest("Missing required parameter: 'contents'.", param="contents")
    chat_body = None  # translated once, for the first provider that needs chat

    def prepare(provider: Provider, upstream_model: str) -> Prepared:
        nonlocal chat_body
        if Operation.GENERATE_CONTENT in provider.operations:  # Gemini: passed through
            prepared = natively(provider, Operation.GENERATE_CONTENT, upstream_model, body, stream)
            if stream and not sse:  # the provider relays SSE; this client reads the array
                assert prepared.translator is not None
                prepared.translator = JsonArray(prepared.translator)
            return prepared
        if chat_body is None:
            chat_body = gemini_to_chat(body, model, stream)
        return through_chat(
            provider,
            upstream_model,
            dict(chat_body),
            stream,
            lambda: GeminiFromChat(upstream_model, sse),
            gemini_response_from_chat,
        )

    call = Call(
        Operation.GENERATE_CONTENT,
        model,
        stream,
        prepare,
        stream_format=gemini_stream(sse),
        ask=ask_of(body),
        stored=gemini_form(sse),
        body=body,
    )
    return await request.app[DISPATCHER].dispatch(request, call)


async def count_tokens(request: web.Request, model: str) -> web.StreamResponse:
    """Passed through where the model's (first) provider is Gemini; else estimated offline,
    never a paid call."""
    body = camel_case(decode_object(await read_body(request)), COUNT_TOKENS_REQUEST)
    first = request.app[ROUTER].plan(model, Operation.GENERATE_CONTENT)[0]
    if Operation.COUNT_GEMINI_TOKENS in first.group.provider.operations:

        def prepare(provider: Provider, upstream_model: str) -> Prepared:
            upstream = provider.build_request(
                Operation.COUNT_GEMINI_TOKENS, upstream_model, body, False
            )
            return Prepared(upstream, translate=unchanged)

        call = Call(Operation.COUNT_GEMINI_TOKENS, model, False, prepare)
        return await request.app[DISPATCHER].dispatch(request, call)
    key = request.get(GATEWAY_KEY)
    if key is not None:
        key.check_models([model])
    return web.Response(
        body=estimate_count_tokens(body),
        content_type="application/json",
        headers={TOKEN_COUNT_HEADER: "estimate"},
    )


def error_response(error: GatewayError) -> web.Response:
    """Gemini's error shape: `{"error": {"code", "message", "status"}}`."""
    return error_middleware.error_response(error, gemini_error_body(error))


def add_routes(app: web.Application) -> None:
    for prefix in PATH_PREFIXES:
        add_route(app, "POST", prefix + "{target:.+}", gemini, error_response)
        # A path no model method takes (a newline in it): a 404 in Gemini's shape.
        add_route(app, "POST", prefix + r"{rest:[\s\S]+}", unknown_path, error_response)
