"""The bases every provider adapter is built on.

- `Adapter`: a name, a config, the operations served; an operation it does not serve is a 400.
- `HttpProvider`: an upstream reached over HTTP: its base URL, its key (`ApiKey`, checked per
  request) and the headers that carry it, and OpenAI-shaped error answers.
- `TranslatingProvider`: an upstream with an API of its own, reached by translating OpenAI
  chat: the parameters it cannot honour are a 400 naming them (one wording, one `code`), the
  request is decoded once (`ChatRequest`), and its stream is an `EventTranslator` writing to a
  `ChatSink` (the chat writer, or a bridge to another client format).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from formats.chat.from_chat import ChatStreamWriter
from formats.chat.request import Asks, ChatRequest, decode_chat_request, reject_unsupported
from formats.translator import ChatSink, StreamTranslator
from providers.declaration import HttpProviderConfig, ProviderConfig
from wire.config_values import resolve_key
from wire.errors import BadRequest, GatewayError, ProviderAuthError, upstream_error_from_body
from wire.operations import Operation, RawBody
from wire.upstream import Transport, Upload, UpstreamRequest


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


def unsupported_operation(provider: str, operation: Operation) -> BadRequest:
    return BadRequest(
        f"Provider {provider!r} does not support {operation.value}.",
        param="model",
        code="unsupported_operation",
    )


class Adapter(abc.ABC):
    """A provider table's adapter: the `Provider` the gateway routes to."""

    operations: frozenset[Operation]  # each adapter class sets it; an instance may narrow it
    transport: Transport | None = None

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    @abc.abstractmethod
    def build_request(
        self, operation: Operation, model: str, body: RawBody, stream: bool
    ) -> UpstreamRequest: ...

    @abc.abstractmethod
    def stream_translator(self, operation: Operation, model: str) -> StreamTranslator: ...

    @abc.abstractmethod
    def chat_translator(self, model: str, sink: ChatSink) -> StreamTranslator: ...

    @abc.abstractmethod
    def translate_response(self, operation: Operation, model: str, body: bytes) -> bytes: ...

    @abc.abstractmethod
    def upstream_error(
        self, status: int, body: bytes, headers: Mapping[str, str]
    ) -> GatewayError: ...

    def build_upload(self, operation: Operation, model: str, upload: Upload) -> UpstreamRequest:
        # The routing plan sends an upload only where `operations` has it.
        raise unsupported_operation(self.name, operation)


class HttpProvider(Adapter):
    """An adapter whose upstream is an HTTP API, with the key in one header."""

    key_header: ClassVar[str] = "Authorization"
    key_prefix: ClassVar[str] = "Bearer "

    def __init__(self, name: str, config: HttpProviderConfig) -> None:
        super().__init__(name, config)
        self.base_url = config.base_url.rstrip("/")
        self.key = ApiKey(config.api_key)
        self.headers = self.key.headers(config.headers, self.key_header, self.key_prefix)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} url={self.base_url!r}>"

    def check_key(self) -> None:
        """The 502 naming the variable, when the key's `env.NAME` is not set."""
        self.key.check(self.name)

    def upstream_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return upstream_error_from_body(status, body, self.name)


class TranslatingProvider(HttpProvider):
    """An HTTP upstream with an API of its own, reached by translating OpenAI chat."""

    label: ClassVar[str]  # the upstream's name, for messages ("Anthropic")
    # Parameters the translated answer cannot carry, and which of their values ask for it.
    unsupported: ClassVar[Mapping[str, Asks]] = {}

    def build_request(
        self, operation: Operation, model: str, body: RawBody, stream: bool
    ) -> UpstreamRequest:
        self.check_key()
        if operation is not Operation.CHAT:
            return self.pass_through(operation, model, body, stream)
        reject_unsupported(body, self.unsupported, self.name, self.label)
        return self.chat_request(decode_chat_request(body), model, stream)

    @abc.abstractmethod
    def chat_request(self, request: ChatRequest, model: str, stream: bool) -> UpstreamRequest:
        """The upstream's request for an OpenAI chat request."""

    def pass_through(
        self, operation: Operation, model: str, body: RawBody, stream: bool
    ) -> UpstreamRequest:
        """A request in the upstream's own format (Anthropic's Messages, Gemini's
        generateContent), for the providers that serve one."""
        raise unsupported_operation(self.name, operation)

    def stream_translator(self, operation: Operation, model: str) -> StreamTranslator:
        if operation is not Operation.CHAT:
            return self.relay(operation, model)
        return self.chat_translator(model, ChatStreamWriter(model))

    def relay(self, operation: Operation, model: str) -> StreamTranslator:
        """The stream of a passed-through request, relayed in the upstream's format."""
        raise unsupported_operation(self.name, operation)

    def translate_response(self, operation: Operation, model: str, body: bytes) -> bytes:
        if operation is not Operation.CHAT:
            return body  # passed through: the client speaks the upstream's format
        return self.chat_answer(body, model)

    @abc.abstractmethod
    def chat_answer(self, body: bytes, model: str) -> bytes:
        """The upstream's non-streamed answer as our chat.completion JSON."""

    def post(
        self, url: str, payload: Any, headers: dict[str, str] | None = None
    ) -> UpstreamRequest:
        """A POST of `payload` (bytes, or what orjson writes) with the provider's headers."""
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        return UpstreamRequest("POST", url, self.headers if headers is None else headers, body)
