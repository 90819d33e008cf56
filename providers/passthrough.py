"""A stream in the client's own format, relayed as the upstream sends it.

When the client speaks the upstream's API (OpenAI's Responses, Anthropic's Messages, Gemini's
generateContent), nothing is translated: a read that ends on an event boundary goes out as the
very bytes read, and a read cut inside an event goes out as the whole events it completed.
`PassThrough` only watches the events (`watch`, in the subclass) for the one that ends the
stream, for a failure and for the usage; after the end nothing more is sent.
"""

from __future__ import annotations

from typing import Any, ClassVar

from providers.translator import StreamEnd
from wire.errors import UpstreamProtocolError
from wire.sse import Comment, Event, SSEDecoder, SSEProtocolError, encode


class PassThrough(StreamEnd):
    terminal: ClassVar[str]  # the event that ends the stream ("message_stop event")

    def __init__(self, provider: str) -> None:
        super().__init__(provider)
        self.usage: dict[str, Any] | None = None  # OpenAI's usage object, once reported
        self._decoder = SSEDecoder()

    def feed(self, data: bytes) -> bytes:
        if self.finished:
            return b""
        try:
            items = self._decoder.feed(data)
        except SSEProtocolError as exc:
            return self.error_event(UpstreamProtocolError(str(exc)))
        return self.relay(data, items)

    def relay(self, data: bytes, items: list[Event | Comment]) -> bytes:
        """The client's bytes for one read (`data`) and the events it completed (`items`)."""
        aligned = self._decoder.aligned
        for position, item in enumerate(items):
            if type(item) is Event and self.watch(item):
                if aligned and position == len(items) - 1:
                    return data  # the read ends with the terminal event: as it came
                return b"".join(encode(i) for i in items[: position + 1])
        if aligned:
            return data
        return b"".join(encode(item) for item in items)

    def end(self) -> bytes:
        if self.finished:
            return b""
        return self.error_event(
            UpstreamProtocolError(
                f"Provider {self.provider!r} closed the stream before it finished "
                f"(no {self.terminal})."
            )
        )

    def watch(self, event: Event) -> bool:
        """Read what matters in `event` (failure, usage); True when it ends the stream."""
        raise NotImplementedError
