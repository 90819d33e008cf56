"""What a route hands the engine (`Call`), and how one attempt asks its upstream (`Prepared`).

A `Call` is one client request, parsed: the operation, the model as the client named it, the
client's format (its probe, stream headers and keepalive bytes), and `prepare(provider,
model)`, which builds a `Prepared` for every attempt: natively, when the provider serves the
client's API (`natively`), or through the provider's chat API and a bridge back to the
client's format (`through_chat`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from formats.chat.probe import CHAT_STREAM
from formats.stored_answer import StoredForm
from formats.stream_format import StreamFormat
from formats.translator import ChatSink, StreamTranslator
from gateway.server.multipart_upload import MultipartUpload
from providers.base import Provider
from wire.ask import Ask
from wire.operations import Operation, RawBody
from wire.upstream import UpstreamRequest


def unchanged(body: bytes) -> bytes:
    """The `translate` of a whole answer that goes to the client as the upstream wrote it."""
    return body


class Prepared(msgspec.Struct, gc=False):
    """One attempt's upstream request, and how its answer becomes the client's."""

    request: UpstreamRequest
    translator: StreamTranslator | None = None  # a streamed answer, through this
    translate: Callable[[bytes], bytes] | None = None  # a whole answer, through this
    # Content type of a whole answer; None keeps the upstream's (a transcript as text/plain).
    content_type: str | None = "application/json"
    # When the upstream answers 404/405 (it lacks the endpoint): the attempt to make instead
    # (e.g. a Responses request through the chat API), at the same target.
    instead: Callable[[], Prepared] | None = None
    # Called once this attempt answered (e.g. to remember that the chat bridge works).
    on_success: Callable[[], None] | None = None
    # Said after the upstream's own message when it answers 404/405 and no `instead` exists.
    not_found_hint: str | None = None
    # Headers the answer carries when this attempt serves it (e.g. the tools a bridge left out).
    headers: Mapping[str, str] = msgspec.field(default_factory=dict)


def natively(
    provider: Provider, operation: Operation, model: str, body: Any, stream: bool
) -> Prepared:
    """The client's request as it is (but its model), to a provider that serves `operation`."""
    request = provider.build_request(operation, model, body, stream)
    if stream:
        return Prepared(request, provider.stream_translator(operation, model))
    return Prepared(
        request, translate=lambda answer: provider.translate_response(operation, model, answer)
    )


def through_chat(
    provider: Provider,
    model: str,
    chat_body: Any,
    stream: bool,
    bridge: Callable[[], ChatSink],
    from_chat: Callable[[bytes], bytes],
) -> Prepared:
    """The client's request as a chat request (`chat_body`); a streamed answer written into
    `bridge()`, a whole one turned by `from_chat` into the client's format."""
    request = provider.build_request(Operation.CHAT, model, chat_body, stream)
    if stream:
        return Prepared(request, provider.chat_translator(model, bridge()))
    return Prepared(
        request,
        translate=lambda answer: from_chat(
            provider.translate_response(Operation.CHAT, model, answer)
        ),
    )


class Call(msgspec.Struct, gc=False):
    """What a route hands the dispatcher: one client request, parsed."""

    operation: Operation
    model: str  # as the client named it: provider/model or an alias
    stream: bool
    # One attempt's upstream request for a provider and the model name it is sent.
    prepare: Callable[[Provider, str], Prepared]
    fallbacks: Sequence[str] = ()  # the request's own `fallbacks`, tried after the model's
    # Models the body asks the upstream to choose from itself (OpenRouter's `models`).
    upstream_models: Sequence[str] = ()
    # Streams: the client's format (its headers, first-content probe, keepalive, error event).
    stream_format: StreamFormat = CHAT_STREAM
    upload: MultipartUpload | None = None  # a multipart upload, spooled when it may be sent twice
    ask: Ask | None = None  # the most it may use (wire.ask.ask_of): what a max_spend holds
    # The response cache: how the route's answers are stored and given back (None: they are
    # not), and the parsed body it hashes.
    stored: StoredForm | None = None
    body: RawBody | None = None
