"""The contract every provider adapter implements.

A provider is a translation, not a server: it turns our request into its upstream HTTP request,
and its upstream bytes back into ours. It owns no sockets and no retries; `gateway.upstream`
sends the request and `gateway.relay` pumps the bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from wire.config import resolve_key
from wire.errors import GatewayError, ProviderAuthError
from wire.operations import Operation, RawBody
from wire.upstream import Upload, UpstreamRequest


class ApiKey:
    """A configured `api_key` (or other secret) after `env.NAME` resolution.

    An unset variable is only a warning at startup (`gateway.config.warn_missing_keys`): each
    request to the provider then fails (502) naming the variable (`check`).
    """

    __slots__ = ("missing_env", "value")

    def __init__(self, raw: str | None) -> None:
        key = resolve_key(raw)
        self.value = key.value
        self.missing_env = key.missing_env

    def headers(
        self, extra: dict[str, str], name: str = "Authorization", prefix: str = "Bearer "
    ) -> dict[str, str]:
        """JSON request headers: the configured extras, and the key (when set) as `name`."""
        headers = {"Content-Type": "application/json", **extra}
        if self.value:
            headers[name] = prefix + self.value
        return headers

    def check(self, provider: str, what: str = "API key") -> None:
        """Raise the 502 for a request to `provider` when the key's variable is not set: the
        gateway's configuration is at fault, not the client."""
        if self.missing_env:
            raise ProviderAuthError(
                f"Provider {provider!r} has no {what}: the environment variable "
                f"{self.missing_env} is not set on the gateway.",
                code="provider_key_missing",
            )


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


class Provider(Protocol):
    name: str
    # What it can serve; any other operation is a 400 naming the provider and the operation.
    operations: frozenset[Operation]

    def build_request(
        self, operation: Operation, model: str, body: RawBody, stream: bool
    ) -> UpstreamRequest:
        """Our request for `model` (the part after `provider/`) as the upstream's request."""
        ...

    def stream_translator(self, operation: Operation, model: str) -> StreamTranslator: ...

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
