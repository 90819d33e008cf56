"""What the engine needs of a client's stream format, before its first content and at its end.

Each format says it once (`formats.chat.probe.CHAT_STREAM`, `formats.responses.probe`,
`formats.anthropic.probe`, `formats.gemini.probe`): the answer's headers, the probe that tells
its first content, what may be sent while it waits (an SSE comment, Anthropic's ping; nothing
for a byte stream or a JSON array), and the final error event that ends it when it failed
after it started, even when no attempt ever made a translator (keepalives committed it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec

from formats.first_content import ContentProbe
from wire.errors import GatewayError

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    # Tell nginx-style proxies in front not to buffer the stream.
    "X-Accel-Buffering": "no",
}


class StreamFormat(msgspec.Struct, frozen=True, gc=False):
    headers: Mapping[str, str]
    probe: Callable[[], ContentProbe]  # a fresh probe per attempt (it keeps state)
    keepalive: bytes | None  # sent every `keepalive` seconds before the first content
    # The event that ends a started stream with `error`; None: a byte stream with no error
    # event (raw audio), cut short instead.
    error_event: Callable[[GatewayError], bytes | None]
    upstream_content_type: bool = False  # the answer's Content-Type is the upstream's (audio)

    @property
    def sse(self) -> bool:
        return self.headers["Content-Type"].startswith("text/event-stream")
