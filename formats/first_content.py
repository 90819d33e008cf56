"""Has the client's stream reached its first content yet? The probes' type, and the ones that
serve several formats (event-typed streams, raw bytes); chat's own is `formats.chat.probe`.

Until it has, the dispatcher holds the translated bytes back and may still fail over: a
role-only chunk, `response.created` or Anthropic's `message_start` carry nothing the client
would miss if another upstream answered instead. A probe looks at the client's bytes (what a
translator emitted) in the client's format, so one probe per format serves every provider.

A probe runs only before the first content: after that the relay never calls it, so it costs
nothing per chunk. When in doubt a probe says "content": that only commits the stream early,
while a missed content event would hold the stream back until the hold limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

import orjson

from wire.sse import Event, SSEDecoder, SSEProtocolError

# Client bytes -> True once they carry content. A fresh probe per attempt (it keeps state).
ContentProbe = Callable[[bytes], bool]


class TypedEvents:
    """Event-typed streams (Responses, Anthropic Messages, speech and transcript events):
    content is any event whose type (the `event:` line, else the data's `type`) is not in
    `preamble`, and is no error event."""

    __slots__ = ("_decoder", "_preamble")

    def __init__(self, preamble: Collection[str]) -> None:
        self._decoder = SSEDecoder()
        self._preamble = preamble

    def __call__(self, out: bytes) -> bool:
        if (self._decoder.at_boundary or self._decoder.untouched) and self._named_content(out):
            return True
        try:
            items = self._decoder.feed(out)
        except SSEProtocolError:
            return True
        for item in items:
            if type(item) is Event:
                kind = _event_type(item)
                if kind not in self._preamble and kind not in _FAILURES:
                    return True
        return False

    def _named_content(self, out: bytes) -> bool:
        """Whether an `event:` line in `out` (read from an event boundary) names content.

        A burst's first read holds the whole stream: this finds its first content event
        without decoding every event (the full decode was 3 % of the gateway's CPU on C=10
        bursts of /v1/messages). Anything unusual (a second `event:` line after it, whose
        name would count; no `data:` line after it) is left to the decoder.
        """
        preamble = self._preamble
        for line in _EVENT_LINE.finditer(out):
            kind = line[1].decode("utf-8", "replace")
            if kind in preamble or kind in _FAILURES:
                continue
            end = line.end()
            block_end = out.find(b"\n\n", end)
            return (
                block_end >= 0
                and out.find(b"\nevent:", end, block_end) < 0
                and out.find(b"\ndata:", end, block_end) >= 0  # not dispatched without data
            )
        return False


# An `event:` field line, spelled as servers spell it; the name up to the line's end.
_EVENT_LINE = re.compile(rb"(?m)^event: ([^\r\n]*)$")


def _event_type(event: Event) -> str:
    """The event's type; "error" for an error event of any shape."""
    if event.event:
        return event.event
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(data, dict):
        return ""
    kind = data.get("type")
    if kind is None and "error" in data:  # `data: {"error": {...}}`
        return "error"
    return kind if isinstance(kind, str) else ""


# The events that end a stream as failed: the attempt's failure, never content.
_FAILURES = frozenset({"error", "response.failed"})


def content_start(out: bytes, probe: ContentProbe) -> tuple[int, int]:
    """Where the first content event of `out` (a stream's first write, its held bytes) begins,
    and that event's size: what came before it is the stream's preamble (a role chunk,
    `response.created`, `message_start`). `probe` is a fresh one, fed event by event; asked
    once per stream, as it is committed. (0, len(out)) when no event boundary shows (raw
    bytes) or no event is content."""
    start = 0
    while True:
        end = out.find(b"\n\n", start)
        if end == -1:
            break
        if probe(out[start : end + 2]):
            return start, end + 2 - start
        start = end + 2
    end = out.find(b"\n\n")
    return 0, (end + 2 if end != -1 else len(out))


def any_bytes(out: bytes) -> bool:
    """Raw audio: every byte is content (a byte stream has no error event)."""
    return True


def every_byte() -> ContentProbe:
    return any_bytes


def event_content() -> ContentProbe:
    """Speech and transcript events: every event but an error is content."""
    return TypedEvents(())
