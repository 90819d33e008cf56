"""POST /v1beta/models/{model}:generateContent and :streamGenerateContent: Gemini, inbound.

The google-genai SDK talks to the gateway in Gemini's format. `{model}` is an alias or
`provider/model` (the slash as is, or as %2F). To a Gemini provider the request passes through
and its stream comes back as sent; to any other it is translated to chat and the answer back
into GenerateContentResponses (`providers/gemini_bridge.py`). `?alt=sse` streams SSE; without
it, Gemini's JSON array, object by object. Errors come in Gemini's shape.
"""

from __future__ import annotations

from aiohttp import web

from gateway import errors
from gateway.app_keys import DISPATCHER
from gateway.bodies import read_body
from gateway.dispatch import Call
from gateway.first_content import event_content, every_byte
from gateway.parsing import decode_object
from gateway.prepared import Prepared, through_chat, unchanged
from gateway.relay import SSE_HEADERS
from providers.base import Provider
from providers.gemini_bridge import (
    GeminiFromChat,
    gemini_error_body,
    gemini_response_from_chat,
    gemini_to_chat,
)
from providers.gemini_relay import GeminiRelay
from wire.errors import BadRequest, GatewayError, NotFound
from wire.operations import Operation

PATH_PREFIXES = ("/v1beta/models/", "/v1/models/")
_METHODS = {"generateContent": False, "streamGenerateContent": True}
_ARRAY_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-cache"}


async def generate(request: web.Request) -> web.StreamResponse:
    model, _, method = request.match_info["target"].rpartition(":")
    if method not in _METHODS or not model:
        raise NotFound(
            f"Unknown method {method!r}: use models/MODEL:generateContent or "
            ":streamGenerateContent.",
        )
    stream = _METHODS[method]
    sse = stream and request.query.get("alt") == "sse"
    body = decode_object(await read_body(request))
    if "contents" not in body:
        raise BadRequest("Missing required parameter: 'contents'.", param="contents")
    model = model.removeprefix("models/")
    chat_body = None  # translated once, for the first provider that needs chat

    def prepare(provider: Provider, upstream_model: str) -> Prepared:
        nonlocal chat_body
        if Operation.GENERATE_CONTENT in provider.operations:  # Gemini: passed through
            upstream = provider.build_request(
                Operation.GENERATE_CONTENT, upstream_model, body, stream
            )
            if stream:
                return Prepared(upstream, GeminiRelay(provider.name, sse=sse))
            return Prepared(upstream, translate=unchanged)
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
        content_probe=event_content if sse else every_byte,
        stream_headers=SSE_HEADERS if sse else _ARRAY_HEADERS,
        # Only the SSE stream gets comments: the array's keepalive would have to open it
        # ("["), which a failover cannot take back.
        keepalive=b": keepalive\r\n\r\n",
    )
    return await request.app[DISPATCHER].dispatch(request, call)


def error_response(error: GatewayError) -> web.Response:
    """Gemini's error shape: `{"error": {"code", "message", "status"}}`."""
    return errors.error_response(error, gemini_error_body(error))


def add_routes(app: web.Application) -> None:
    for prefix in PATH_PREFIXES:
        app.router.add_post(prefix + "{target:.+}", generate)
