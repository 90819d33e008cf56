"""Anthropic's Messages API passed through to an Anthropic provider (`Operation.MESSAGES`).

The client already speaks the upstream's format, so its request goes out unchanged but for the
model name (`providers.anthropic`), with the `anthropic-beta` and `anthropic-version` headers
it sent (`with_client_headers`), and the event stream comes back as the upstream sent it:
`MessagesRelay` only watches it, for the terminal `message_stop` or an `error` event
(platform.claude.com/docs/en/build-with-claude/streaming) and for the usage that
`message_start` and `message_delta` report.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from providers.anthropic_stream import (
    Usage,
    anthropic_error,
    decode_error,
    decode_message_delta,
    decode_message_start,
    event_type,
    openai_usage,
    stream_error,
)
from providers.messages_bridge import anthropic_error_event
from providers.passthrough import PassThrough, events_of_type
from wire.errors import GatewayError
from wire.sse import Event
from wire.upstream import UpstreamRequest

# The client's headers that say what it asks of the API: betas (Claude Code sends several,
# e.g. interleaved thinking, context management) and the version it was written against.
_BETA = "anthropic-beta"
_VERSION = "anthropic-version"


def with_client_headers(request: UpstreamRequest, headers: Mapping[str, str]) -> UpstreamRequest:
    """`request` with the client's `anthropic-beta` (joined to any the provider configures)
    and `anthropic-version` (in place of the provider's) headers.

    Args:
        request: What the provider built for `Operation.MESSAGES` or `COUNT_TOKENS`.
        headers: The client's request headers (any mapping; names are matched ignoring case,
            and a header sent several times, as a multidict holds it, is joined by commas).
    """
    betas: list[str] = []
    version: str | None = None
    for name, value in headers.items():
        key = name.lower()
        if key == _BETA:
            betas += [beta.strip() for beta in value.split(",") if beta.strip()]
        elif key == _VERSION:
            version = value
    if not betas and version is None:
        return request
    merged: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        if key == _BETA:
            betas = [beta.strip() for beta in value.split(",") if beta.strip()] + betas
        elif key != _VERSION or version is None:
            merged[name] = value
    if betas:
        merged[_BETA] = ",".join(dict.fromkeys(betas))  # each beta once, in order
    if version is not None:
        merged[_VERSION] = version
    return msgspec.structs.replace(request, headers=merged)


class MessagesRelay(PassThrough):
    """Anthropic's stream relayed as it comes. After `message_stop` (finished) or an `error`
    event (finished, `failure` set) nothing more is sent. `usage` is OpenAI's usage object
    for what message_start and message_delta reported.
    """

    terminal = "message_stop event"
    unwatched = events_of_type(b"content_block_delta")

    def __init__(self, provider: str) -> None:
        super().__init__(provider)
        self._usage: Usage | None = None

    def error_bytes(self, error: GatewayError) -> bytes:
        return anthropic_error_event(error)

    def watch(self, event: Event) -> bool:
        """Read what matters in `event`; True when it ends the stream."""
        # A server that omits `event:` lines still names the type in the data.
        kind = event.event or event_type(event.data)
        try:
            if kind == "message_delta":
                self._count(decode_message_delta(event.data).usage)
            elif kind == "message_start":
                self._count(decode_message_start(event.data).message.usage)
            elif kind == "message_stop":
                self.finished = True
            elif kind == "error":
                self.failure = stream_error(decode_error(event.data))
                self.finished = True
        except msgspec.DecodeError:
            # Not ours to judge: the client reads the upstream's event as it is. An error
            # event still ends the stream.
            if kind == "error":
                self.finished = True
                self.failure = anthropic_error(None, "api_error", event.data[:2000])
        return self.finished

    def _count(self, usage: Usage | None) -> None:
        if usage is not None:
            self._usage = usage if self._usage is None else self._usage.updated(usage)
            self.usage = openai_usage(self._usage)
