"""The contract between the gateway and the providers: the `Provider` protocol.

A provider is a translation, not a server: it turns our request into its upstream HTTP request,
and its upstream bytes back into ours (through a `formats.translator.StreamTranslator`). It
owns no sockets and no retries: the gateway's engine sends the request, retries, and pumps the
bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from formats.translator import ChatSink, StreamTranslator
from wire.errors import GatewayError
from wire.operations import Operation, RawBody
from wire.upstream import Transport, Upload, UpstreamRequest


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
