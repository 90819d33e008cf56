"""OpenAI and every OpenAI-compatible server (`type = "openai"`).

Requests go out as they came in, with only `model` replaced and usage asked for. Chat streams
are relayed as bytes, normalised (`formats.chat.normaliser.ChunkNormaliser`: `finish_reason`
and `usage` only in the last chunk before `data: [DONE]`); a Responses stream is relayed as it
comes (`ResponsesRelay`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from formats.chat.normaliser import ChunkNormaliser
from formats.chat.to_chat import ChatChunkReader
from formats.responses.error_shape import responses_error_event
from formats.translator import ChatSink, StreamTranslator
from providers.adapter import HttpProvider
from providers.declaration import HttpProviderConfig, ProviderType
from providers.passthrough import PassThrough
from wire.errors import (
    GatewayError,
    UpstreamError,
    UpstreamProtocolError,
    upstream_error_from_body,
)
from wire.operations import Operation, RawBody
from wire.sse import Event
from wire.upstream import Upload, UpstreamRequest
from wire.usage import Usage, from_openai

PATHS = {
    Operation.CHAT: "/chat/completions",
    Operation.COMPLETIONS: "/completions",
    Operation.RESPONSES: "/responses",
    Operation.EMBEDDINGS: "/embeddings",
    Operation.SPEECH: "/audio/speech",
    Operation.TRANSCRIPTION: "/audio/transcriptions",
    Operation.TRANSLATION: "/audio/translations",
}
# Chat-style streams end in [DONE] and can be asked for a trailing usage chunk.
CHAT_STYLE = frozenset({Operation.CHAT, Operation.COMPLETIONS})
_INCLUDE_USAGE = msgspec.Raw(b'{"include_usage":true}')
RESPONSES_MODES = ("native", "bridge", "auto")


class OpenAIProviderConfig(HttpProviderConfig, frozen=True, tag="openai"):
    """Any OpenAI-compatible server: OpenAI itself, vLLM, llama.cpp, Groq, ..."""

    # /v1/responses: "native", "bridge" (through chat) or "auto"; the default is the preset's,
    # else "auto" (see providers/presets.py).
    responses: str = "auto"

    def problem(self) -> tuple[str, str] | None:
        if self.responses not in RESPONSES_MODES:
            return "responses", f"one of {', '.join(RESPONSES_MODES)} (got {self.responses!r})"
        return super().problem()


class OpenAIShaped:
    """What an adapter whose upstream speaks OpenAI's API answers with: streams relayed (and
    normalised), whole answers as they are, errors read as OpenAI's (the mock's too)."""

    name: str

    def stream_translator(self, operation: Operation, model: str) -> StreamTranslator:
        if operation is Operation.RESPONSES:
            return ResponsesRelay(self.name)
        return ChunkNormaliser(operation, self.name)

    def chat_translator(self, model: str, sink: ChatSink) -> ChatChunkReader:
        return ChatChunkReader(self.name, sink)

    def translate_response(self, operation: Operation, model: str, body: bytes) -> bytes:
        return body

    def upstream_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return upstream_error_from_body(status, body, self.name)


class OpenAIProvider(OpenAIShaped, HttpProvider):
    """Builds OpenAI-compatible requests; streams are normalised by `ChunkNormaliser`."""

    operations = frozenset(PATHS)

    def __init__(self, name: str, config: HttpProviderConfig) -> None:
        super().__init__(name, config)
        # How /v1/responses is served: "native", "bridge" (its chat API) or "auto" (native,
        # until a 404/405 shows it has no Responses API: gateway/routes/responses.py).
        self.responses_mode = getattr(config, "responses", "native")
        if self.responses_mode == "bridge":
            self.operations = self.operations - {Operation.RESPONSES}

    def url(self, operation: Operation, model: str) -> str:
        """Where `operation` goes upstream (a hook: Azure puts the model in the path)."""
        return self.base_url + PATHS[operation]

    def build_request(
        self, operation: Operation, model: str, body: RawBody, stream: bool
    ) -> UpstreamRequest:
        self.check_key()
        return UpstreamRequest(
            "POST",
            self.url(operation, model),
            self.headers,
            encode_body(body, model, stream and operation in CHAT_STYLE),
        )

    def build_upload(self, operation: Operation, model: str, upload: Upload) -> UpstreamRequest:
        self.check_key()
        headers = {**self.headers, "Content-Type": upload.content_type}
        return UpstreamRequest("POST", self.url(operation, model), headers, upload.body(model))


def encode_body(body: RawBody, model: str, ask_usage: bool) -> bytes:
    """The client's body with the upstream's model name, asking for the usage chunk if told.
    `body` is left as it is: every attempt of the request, at any provider, reads it."""
    sent = {**body, "model": msgspec.Raw(msgspec.json.encode(model))}
    if ask_usage:
        sent["stream_options"] = _with_usage(body.get("stream_options"))
    return msgspec.json.encode(sent)


def _with_usage(stream_options: msgspec.Raw | None) -> msgspec.Raw:
    """Ask for the trailing usage chunk, keeping any other stream option the client set."""
    if stream_options is None:
        return _INCLUDE_USAGE
    options = msgspec.json.decode(stream_options)
    if not isinstance(options, dict):
        return _INCLUDE_USAGE
    options["include_usage"] = True
    return msgspec.Raw(msgspec.json.encode(options))


# msgspec recurses into what it skips: an event nested ~1,000 deep is a RecursionError.
_UNREADABLE = (msgspec.DecodeError, RecursionError)


class _TypeProbe(msgspec.Struct, gc=False):
    type: str = ""


_type_probe = msgspec.json.Decoder(_TypeProbe)
_TERMINAL = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})
_FAILED = frozenset({"response.failed", "error"})


class _FinalResponse(msgspec.Struct, gc=False):
    usage: dict[str, Any] | None = None


class _FinalEvent(msgspec.Struct, gc=False):
    response: _FinalResponse | None = None


_final_event = msgspec.json.Decoder(_FinalEvent)


def responses_usage(data: str) -> Usage | None:
    """A Responses stream's final usage."""
    try:
        response = _final_event.decode(data).response
    except msgspec.DecodeError:
        return None
    return from_openai(response.usage) if response is not None else None


class _FailedResponse(msgspec.Struct, gc=False):
    error: Any = None


class _FailureEvent(msgspec.Struct, gc=False):
    """`error` events carry code/message at the top; `response.failed` in response.error."""

    message: str | None = None
    code: str | None = None
    response: _FailedResponse | None = None


_failure_event = msgspec.json.Decoder(_FailureEvent)


def _failure(data: str, provider: str) -> GatewayError:
    """The error a Responses stream ended with (`error` or `response.failed`)."""
    try:
        event = _failure_event.decode(data)
    except msgspec.DecodeError:
        return UpstreamProtocolError(f"Provider {provider!r} failed the response.")
    detail = event.response.error if event.response is not None else None
    if isinstance(detail, dict):
        message, code = detail.get("message"), detail.get("code")
    else:
        message, code = event.message, event.code
    return UpstreamError(
        str(message or f"Provider {provider!r} failed the response."),
        status=502,
        code=str(code) if code is not None else None,
    )


class ResponsesRelay(PassThrough):
    """OpenAI's own Responses stream, relayed as it comes; watched only for its terminal event
    (`response.completed`, `.failed`, `.incomplete` or `error`), after which nothing is sent."""

    terminal = "response.completed event"

    def __init__(self, provider: str) -> None:
        super().__init__(provider)
        self._events = 0  # for our own error event's sequence_number

    def watch(self, event: Event) -> bool:
        self._events += 1
        kind = self._kind(event)
        if kind not in _TERMINAL:
            return False
        self.finished = True
        if kind in _FAILED:
            self.failure = _failure(event.data, self.provider)
        else:
            self.usage = responses_usage(event.data)
        return True

    def error_bytes(self, error: GatewayError) -> bytes:
        return responses_error_event(error, self._events)

    @staticmethod
    def _kind(event: Event) -> str:
        if event.event is not None:
            return event.event
        try:  # a server that omits `event:` lines still names the type in the data
            return _type_probe.decode(event.data).type
        except _UNREADABLE:
            return ""


PROVIDER = ProviderType(
    "openai",
    OpenAIProviderConfig,
    OpenAIProvider,
    upstream="OpenAI and any OpenAI-compatible server",
    base_url_required=True,
    base_url_example="http://127.0.0.1:8000/v1",
    notes="a table named after a preset gets its host's (below)",
    rank=0,
)
