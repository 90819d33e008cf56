"""POST /v1/responses, streamed (event-based SSE, no [DONE]) and not.

A provider that serves the Responses API itself (OpenAI) gets the request as it came and its
event stream is relayed as is. Any other provider is reached through its chat API, and its
answer is turned into the Responses events (`formats/responses/from_chat.py`); tools its chat
API cannot run are left out, and named in the answer's `x-gateway-dropped-tools` header.
"""

from __future__ import annotations

import weakref

from aiohttp import web

from formats.responses.from_chat import ResponsesFromChat, response_echo, response_from_chat
from formats.responses.probe import RESPONSES_STREAM
from formats.responses.request import bridge_request
from formats.responses.tools import DROPPED_TOOLS_HEADER
from formats.stored_answer import responses_form
from gateway.engine.call import Call, Prepared, natively, through_chat
from gateway.engine.dispatcher import DISPATCHER
from gateway.server.bodies import read_body
from gateway.server.parsing import parse_request
from providers.base import Provider
from wire.ask import ask_of
from wire.operations import Operation

OPERATION = Operation.RESPONSES
# Providers in `responses = "auto"` mode found to have no Responses API: answered through
# their chat API from then on (per provider object, so per gateway process and config).
_BRIDGED: weakref.WeakSet[Provider] = weakref.WeakSet()


async def create_response(request: web.Request) -> web.StreamResponse:
    parsed = parse_request(await read_body(request), OPERATION)
    stream = parsed.stream
    echo = response_echo(parsed.body)  # what a bridged Response object repeats of the request

    def bridged(provider: Provider, model: str) -> Prepared:
        chat, tools = bridge_request(parsed.body, provider.name)
        prepared = through_chat(
            provider,
            model,
            chat,
            stream,
            lambda: ResponsesFromChat(model, echo, tools),
            lambda answer: response_from_chat(answer, echo, tools),
        )
        if tools.dropped:  # tools its chat API cannot run: the answer says they were left out
            prepared.headers = {DROPPED_TOOLS_HEADER: ", ".join(tools.dropped)}
        return prepared

    def prepare(provider: Provider, model: str) -> Prepared:
        if OPERATION not in provider.operations or provider in _BRIDGED:
            return bridged(provider, model)
        prepared = natively(provider, OPERATION, model, parsed.body, stream)
        if getattr(provider, "responses_mode", "native") == "auto":
            # Tried natively; an upstream that has no /responses (404/405) is asked through
            # its chat API instead, and once that answers, always so.
            def through_chat() -> Prepared:
                instead = bridged(provider, model)
                instead.on_success = lambda: _BRIDGED.add(provider)
                return instead

            prepared.instead = through_chat
        else:
            prepared.not_found_hint = (
                f"(Provider {provider.name!r} answered {OPERATION.value} with 404/405: if it has "
                'no Responses API, set responses = "bridge" or "auto" in its table.)'
            )
        return prepared

    call = Call(
        OPERATION,
        parsed.model,
        stream,
        prepare,
        parsed.fallbacks,
        upstream_models=parsed.upstream_models,
        stream_format=RESPONSES_STREAM,
        ask=ask_of(parsed.body),
        stored=responses_form(echo),
        body=parsed.body,
    )
    return await request.app[DISPATCHER].dispatch(request, call)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/responses", create_response)
