"""A stream in the client's own format, relayed as the upstream sends it.

When the client speaks the upstream's API (OpenAI's Responses, Anthropic's Messages, Gemini's
generateContent), nothing is translated: a read that ends on an event boundary goes out as the
very bytes read, and a read cut inside an event goes out as the whole events it completed.
`PassThrough` only watches the events (`watch`, in the subclass) for the one that ends the
stream, for a failure and for the usage; after the end nothing more is sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import ClassVar

from formats.translator import StreamEnd
from wire.errors import UpstreamProtocolError
from wire.sse import Comment, Event, SSEDecoder, SSEProtocolError, encode
from wire.usage import Usage

# Reads up to this size may skip unwatched events (far above one read of a real stream).
_SKIPPING_READ_MAX = 1 << 20
_BOM_FIRST = b"\xef"  # the first byte of the UTF-8 BOM, which an SSE stream may begin with


def events_of_type(name: bytes) -> re.Pattern[bytes]:
    """A run of events named `name`, each one `event:` line and one `data: ` line, LF-ended:
    what `PassThrough.unwatched` matches."""
    return re.compile(b"(?:event: " + re.escape(name) + rb"\ndata: [^\n]*\n\n)*")


class PassThrough(StreamEnd):
    terminal: ClassVar[str]  # the event that ends the stream ("message_stop event")
    # Events that `watch` always ignores (`events_of_type`), or None. Runs of them (the
    # content deltas: nearly all of a stream) are stepped over undecoded.
    unwatched: ClassVar[re.Pattern[bytes] | None] = None

    def __init__(self, provider: str) -> None:
        super().__init__(provider)
        self.usage: Usage | None = None  # as reported so far
        self.finish_reasons: tuple[str, ...] = ()  # as reported so far, in OpenAI's words
        self._decoder = SSEDecoder()

    def feed(self, data: bytes) -> bytes:
        if self.finished:
            return b""
        unwatched = self.unwatched
        if (
            unwatched is not None
            and data[-2:] == b"\n\n"
            and len(data) <= _SKIPPING_READ_MAX
            and b"\r" not in data
        ):
            decoder = self._decoder
            if decoder.at_boundary:
                return self._skipping(data, unwatched.match, 0, [])
            if decoder.untouched and data[:1] != _BOM_FIRST:
                # The stream's first read (with a burst, all of it): its first block goes to
                # the decoder as it is, so that the decoder's BOM check sees the start.
                first = data.find(b"\n\n") + 2
                return self._skipping(data, unwatched.match, first, decoder.feed(data[:first]))
        try:
            items = self._decoder.feed(data)
        except SSEProtocolError as exc:
            return self.error_event(UpstreamProtocolError(str(exc)))
        return self.relay(data, items)

    def _skipping(
        self,
        data: bytes,
        skip_run: Callable[[bytes, int], re.Match[bytes] | None],
        start: int,
        first: list[Event | Comment],
    ) -> bytes:
        """`feed` for a read of whole blocks with LF line ends only.

        With no CR, every LF LF ends a block (a dispatch, or a blank line after one), so
        from a boundary a run of unwatched events is stepped over by one regex match in C,
        and each other block goes through the decoder, which sees the same blocks at the
        same boundaries as if the skipped ones were not there. On C=10 bursts of a
        100-token Anthropic stream this took the pass-through's decoding from 18 % of the
        gateway's CPU to 4 %.
        """
        size = len(data)
        for item in first:  # the events of data[:start], already decoded
            if type(item) is Event and self.watch(item):
                return data if start == size else data[:start]
        while True:
            run = skip_run(data, start)
            if run is not None:  # always, as the pattern may match nothing
                start = run.end()
            if start == size:
                return data
            end = data.find(b"\n\n", start) + 2
            if end == 1:  # no LF LF left: only the blank line that ends the read
                end = size
            # A block under _SKIPPING_READ_MAX cannot exceed the decoder's max_event_size.
            for item in self._decoder.feed(data[start:end]):
                if type(item) is Event and self.watch(item):
                    return data if end == size else data[:end]
            start = end

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
