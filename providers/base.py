"""The contracts between the gateway and the providers.

A provider is a translation, not a server: it turns our request into its upstream HTTP request,
and its upstream bytes back into ours. It owns no sockets and no retries; `gateway.upstream`
sends the request and `gateway.relay` pumps the bytes through a `StreamTranslator`.

A translated chat stream is written to a `ChatSink`, one typed delta at a time: the chat
writer (`providers.chunks.ChatStreamWriter`) encodes OpenAI's chunks, and the bridges to the
Responses, Anthropic and Gemini formats build their own events from the same deltas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from wire.errors import GatewayError
from wire.operations import Operation, RawBody
from wire.upstream import Transport, Upload, UpstreamRequest


class StreamTranslator(Protocol):
    """Sans-IO: upstream stream bytes in, client SSE bytes out, for one request."""

    # True once the terminal event went out ([DONE] or an error event): stop reading upstream.
    finished: bool
    # The error the stream ended with, once its error event went out (None otherwise): before
    # any content reached the client, the dispatcher takes it as a failed attempt instead.
    failure: GatewayError | None

    @property
    def usage(self) -> dict[str, Any] | None:
        """OpenAI's usage object (prompt_tokens, completion_tokens, total_tokens) once the
        stream has it, for limits and metrics; None when the upstream gives none."""
        ...

    def feed(self, data: bytes) -> bytes:
        """Bytes to send the client for this upstream chunk (possibly b"")."""
        ...

    def end(self) -> bytes:
        """The upstream closed its stream: the closing bytes, or an error event if it was cut."""
        ...

    def error_event(self, error: GatewayError) -> bytes | None:
        """The final event that tells the client the stream failed; sets `finished`.
        None for a stream with no error event (raw audio): the connection is then cut."""
        ...


class ChatSink(Protocol):
    """Where a translated chat stream goes, delta by delta; each call returns client bytes.

    Empty text, signature and argument fragments are no deltas: a sink returns b"" for them.
    """

    def opening(self) -> bytes:
        """What the client's stream opens with, once the upstream's first bytes arrived."""
        ...

    def named(self, model: str, id: str | None = None) -> None:
        """The upstream named the answer's model (and its id)."""
        ...

    def content(self, text: str) -> bytes: ...

    def reasoning(self, text: str) -> bytes: ...

    def reasoning_signature(self, signature: str) -> bytes: ...

    def reasoning_redacted(self, data: str) -> bytes:
        """One redacted thinking block's opaque data (Anthropic's, Bedrock's), to be sent
        back as it came."""
        ...

    def tool_call(self, index: int, id: str, name: str, arguments: str = "") -> bytes:
        """The start of tool call `index` (0, 1, ... in the order the calls began)."""
        ...

    def tool_arguments(self, index: int, fragment: str) -> bytes: ...

    def finish(self, finish_reason: str, usage: dict[str, Any] | None) -> bytes:
        """The answer ended normally: OpenAI's finish_reason and usage object."""
        ...

    def error(self, error: GatewayError) -> bytes:
        """The stream failed: its final error event."""
        ...

    def comment(self, text: str) -> bytes:
        """An upstream's SSE comment (a keepalive)."""
        ...


class Provider(Protocol):
    name: str

    @property
    def operations(self) -> frozenset[Operation]:
        """What it serves; any other operation is a 400 naming the provider and it."""
        ...

    @property
    def transport(self) -> Transport | None:
        """An adapter that answers in-process (the mock) is its own transport; None: HTTP."""
        ...

    def build_request(
        self, operation: Operation, model: str, body: RawBody, stream: bool
    ) -> UpstreamRequest:
        """Our request for `model` (the part after `provider/`) as the upstream's request."""
        ...

    def stream_translator(self, operation: Operation, model: str) -> StreamTranslator: ...

    def chat_translator(self, model: str, sink: ChatSink) -> StreamTranslator:
        """The chat stream's deltas, written to `sink` (a bridge to another client format)."""
        ...

    def build_upload(self, operation: Operation, model: str, upload: Upload) -> UpstreamRequest:
        """A multipart upload (transcription) as the upstream's request, streamed."""
        ...

    def translate_response(self, operation: Operation, model: str, body: bytes) -> bytes:
        """A non-streamed upstream answer (status < 400) as our JSON answer."""
        ...

    def upstream_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        """An upstream error answer as our error, keeping its status and message (`headers`:
        the answer's, for providers that name the error there)."""
        ...
