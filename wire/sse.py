"""Sans-IO Server-Sent Events codec: bytes in, events out; events in, bytes out.

The decoder follows the WHATWG HTML Standard, "Server-sent events", section 9.2.6
"Interpreting an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
It never touches a socket: the caller reads bytes however it likes and hands them to
`SSEDecoder.feed`, which returns every event and comment completed by those bytes and
buffers the rest, as h11's `receive_data`/`next_event` does for HTTP.

How it works:

* Lines are split on bytes, never on text. CR and LF are ASCII, so they can never sit
  inside a UTF-8 multi-byte sequence: a character split across two feeds simply stays in
  the buffered partial line until its line ends, and each complete field value is decoded
  to `str` once (with U+FFFD for invalid bytes, as the spec's "UTF-8 decode" does).
* Each byte is scanned a bounded number of times: new bytes are split into lines in C
  (`bytes.splitlines`, which breaks on exactly CRLF, CR and LF), and an unfinished line is
  kept as a list of chunks that is joined once, when its terminator arrives. So the cost is
  O(bytes read) however the stream is chunked (h11's `_receivebuffer.py` gives the same
  promise, against the same DoS).
* A CR that ends one feed may be the first half of a CRLF: `_skip_lf` remembers it so that
  an LF opening the next feed is not read as a second, empty line.
* The common case -- a whole `data: {...}\\n\\n` chunk arriving at an event boundary, with
  no CR -- is recognised with a few C-level checks and never enters the line loop.
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import orjson

__all__ = ["Comment", "Event", "SSEDecoder", "SSEProtocolError", "encode", "encode_data"]

_BOM = b"\xef\xbb\xbf"
_COLON = 58  # ord(":")
_LF = 10
_CR = 13


class Event(msgspec.Struct, frozen=True, gc=False):
    """One dispatched event.

    Attributes:
        data: The data lines of the event joined with "\\n".
        event: The `event:` field, or None when absent. The spec treats both None and ""
            as the type "message".
        id: The `id:` field given in this event, or None when this event gave none. The id
            that persists across events is `SSEDecoder.last_event_id`.
        retry: The `retry:` field (reconnection time in milliseconds) given in this event.
            A block without data is not dispatched, so a `retry:` alone in its block is
            dropped with it; the spec would still apply it, but a relay never reconnects.
    """

    data: str = ""
    event: str | None = None
    id: str | None = None
    retry: int | None = None


class Comment(msgspec.Struct, frozen=True, gc=False):
    """One comment line (`: text`), such as a keep-alive.

    The spec ignores comments; we return them so a relay can forward keep-alives.

    Attributes:
        text: The line without its leading ":" and without one leading space.
    """

    text: str


class SSEProtocolError(Exception):
    """The upstream sent something we refuse to buffer.

    Attributes:
        status_hint: The HTTP status to answer with if no response has started yet:
            502, because the fault lies with the upstream, not with our client.
    """

    def __init__(self, msg: str, *, status_hint: int = 502) -> None:
        super().__init__(msg)
        self.status_hint = status_hint


class SSEDecoder:
    """Incremental `text/event-stream` decoder.

    Args:
        max_event_size: The most bytes one event block may hold: everything between two
            blank lines, comments included, line terminators excluded. The bound holds
            however the bytes are chunked, so it caps the memory one stream can pin.
            The 16 MiB default is far above any real LLM event; h11 bounds incomplete
            HTTP heads the same way (at 16 KiB).
    """

    __slots__ = (
        "_aligned",
        "_clean",
        "_data",
        "_error",
        "_event",
        "_fields",
        "_id",
        "_last_event_id",
        "_max_event_size",
        "_retry",
        "_size",
        "_skip_lf",
        "_start",
        "_tail",
        "_tail_size",
    )

    def __init__(self, max_event_size: int = 16 * 1024 * 1024) -> None:
        self._max_event_size = max_event_size
        # The unfinished line, as received chunks: joined once when it ends.
        self._tail: list[bytes] = []
        self._tail_size = 0
        # The event being built, per the spec's "data buffer", "event type buffer" and
        # "last event ID buffer" (the id one is per event here; see Event.id).
        self._data: list[bytes] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._fields = False  # a field line (known or not) arrived since the last blank line
        self._size = 0  # bytes of complete lines since the last blank line
        self._last_event_id = ""
        self._start = True  # still looking for the BOM
        self._skip_lf = False  # the last feed ended with CR: an LF next is part of CRLF
        self._error: SSEProtocolError | None = None
        self._aligned = True
        # At an event boundary with nothing special pending: feed() may take the fast path.
        self._clean = False

    def __repr__(self) -> str:
        return (
            f"<SSEDecoder pending={self.pending} aligned={self._aligned}"
            f" last_event_id={self._last_event_id!r}>"
        )

    @property
    def aligned(self) -> bool:
        """Whether the bytes of the last `feed()` can be forwarded verbatim.

        True when they began and ended on an event boundary (nothing of an unfinished
        event buffered before or after) and no BOM was stripped from them: decoding them
        alone gives exactly the items that feed returned. True before any feed.
        """
        return self._aligned

    @property
    def at_boundary(self) -> bool:
        """Whether the next byte starts a new event block: nothing buffered, no CR waiting
        for its LF, the BOM check done. A caller may then skip whole blocks itself."""
        return self._clean

    @property
    def untouched(self) -> bool:
        """Whether no byte has been fed yet (the BOM check still to come)."""
        return self._start and not self._tail

    @property
    def pending(self) -> bool:
        """Whether bytes of an unfinished event (or line) are buffered.

        At EOF this means the stream was cut mid-event; the spec discards such an event.
        """
        return bool(self._tail) or self._fields

    @property
    def last_event_id(self) -> str:
        """The spec's "last event ID string": the latest `id:` seen at a dispatch point.

        It persists across events; an empty `id:` resets it to "".
        """
        return self._last_event_id

    def feed(self, data: bytes) -> list[Event | Comment]:
        """Consume bytes from the stream.

        Args:
            data: The next bytes, split anywhere (mid-line, mid-CRLF, mid-character).

        Returns:
            The events and comments these bytes completed, in stream order. Events
            with no data are not dispatched, per the spec.

        Raises:
            SSEProtocolError: An event block grew beyond `max_event_size`. The decoder
                is then broken and every later call raises the same error.
        """
        # Fast path: one whole `data: ` line plus the blank line, fed at a boundary. The
        # first LF being the second-to-last byte means there is exactly one line; no CR
        # means no other line ending hides in it. Strict decoding is faster than
        # "replace"; invalid UTF-8 takes the general path, which replaces it.
        if self._clean and data[:6] == b"data: ":
            n = len(data)
            if (
                data.find(b"\n") == n - 2
                and data[-1] == _LF
                and _CR not in data
                and n - 2 <= self._max_event_size
            ):
                try:
                    event = Event(data[6:-2].decode())
                except UnicodeDecodeError:
                    pass
                else:
                    self._aligned = True
                    return [event]
        return self._feed(data)

    def _feed(self, data: bytes) -> list[Event | Comment]:
        if self._error is not None:
            raise self._error
        began_at_boundary = not self._tail and not self._fields
        bom = False
        if self._start:
            # The BOM may itself be split across feeds: hold back a prefix of it until
            # three bytes decide. Nothing else can be in the tail yet.
            if self._tail:
                data = self._tail[0] + data
                self._tail = []
                self._tail_size = 0
            if len(data) < 3 and _BOM.startswith(data):
                if data:
                    self._tail = [data]
                    self._tail_size = len(data)
                self._aligned = began_at_boundary and not data
                return []
            self._start = False
            if data.startswith(_BOM):
                data = data[3:]
                bom = True
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == _LF:
                data = data[1:]

        items: list[Event | Comment] = []
        if data:
            last = data[-1]
            lines = data.splitlines()  # breaks on exactly CRLF, CR and LF
            if last in (_LF, _CR):
                self._skip_lf = last == _CR
                tail = b""
            else:
                tail = lines.pop()
            if self._tail and lines:
                self._tail.append(lines[0])
                lines[0] = b"".join(self._tail)
                self._tail = []
                self._tail_size = 0
            if lines:
                self._process(lines, items)
            if tail:
                self._tail.append(tail)
                self._tail_size += len(tail)
            # The last block may still be unfinished: bound what it keeps buffered.
            if self._size + self._tail_size > self._max_event_size:
                self._fail()

        pending = bool(self._tail) or self._fields
        self._aligned = began_at_boundary and not pending and not bom
        self._clean = not pending and not self._skip_lf and not self._start
        return items

    def _process(self, lines: list[bytes], items: list[Event | Comment]) -> None:
        # Locals, not attributes, inside the loop: this runs per line.
        limit = self._max_event_size
        size = self._size
        data = self._data
        event = self._event
        id_ = self._id
        retry = self._retry
        fields = self._fields
        append = items.append
        for line in lines:
            if not line:
                # Blank line: dispatch.
                if size > limit:
                    self._fail()
                if data:
                    text = data[0] if len(data) == 1 else b"\n".join(data)
                    append(Event(text.decode("utf-8", "replace"), event, id_, retry))
                    data = []
                if id_ is not None:
                    self._last_event_id = id_
                size = 0
                event = id_ = retry = None
                fields = False
                continue
            size += len(line)
            if line[:6] == b"data: ":  # the usual spelling of the usual field, tried first
                data.append(line[6:])
                fields = True
                continue
            if line[0] == _COLON:
                text = line[2:] if line[1:2] == b" " else line[1:]
                append(Comment(text.decode("utf-8", "replace")))
                continue
            fields = True
            # No colon: the whole line is the field name and the value is "".
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace")
            elif name == b"id":
                if 0 not in value:
                    id_ = value.decode("utf-8", "replace")
            elif name == b"retry" and value.isdigit():  # bytes.isdigit: ASCII digits only
                # Beyond Python's int-from-string digit limit int() raises: no sane
                # reconnection time is that long, so drop it like any invalid value.
                with contextlib.suppress(ValueError):
                    retry = int(value)
            # Any other field name is ignored, per the spec.
        self._size = size
        self._data = data
        self._event = event
        self._id = id_
        self._retry = retry
        self._fields = fields

    def _fail(self) -> None:
        self._error = SSEProtocolError(
            f"upstream SSE event exceeds max_event_size ({self._max_event_size} bytes)"
            " before its blank line"
        )
        self._clean = False
        raise self._error


def _split_lines(text: str) -> list[str]:
    # The encoder's line breaks are the decoder's: CRLF, CR, LF (not str.splitlines, which
    # also breaks on U+2028, form feed and others that SSE keeps as ordinary characters).
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


def encode(item: Event | Comment) -> bytes:
    """Serialise an event or comment to bytes that decode back to it.

    An Event becomes `event:`, `id:`, `retry:` lines (each only when not None), one
    `data:` line per line of `data` (so CR and CRLF in data come back as LF), then a blank
    line. Data "" still yields one `data: ` line, so the event is dispatched.

    A Comment becomes one `: line` per line of its text, then a blank line. The blank line
    dispatches nothing (no data is pending between encoded items), but it makes every
    encoded item a block of its own: clients that split the stream on blank lines instead
    of parsing it line by line -- common in LLM client code -- would otherwise see the next
    event glued to the comment and could drop it.

    Raises:
        ValueError: `event` or `id` contains CR or LF, `id` contains NUL (the decoder
            would ignore it), or `retry` is not a non-negative int. Text holding lone
            surrogates raises UnicodeEncodeError, a ValueError too.
    """
    if isinstance(item, Comment):
        return "".join([f": {line}\n" for line in _split_lines(item.text)]).encode() + b"\n"
    event, id_, retry, data = item.event, item.id, item.retry, item.data
    if event is None and id_ is None and retry is None and "\n" not in data and "\r" not in data:
        return b"data: " + data.encode() + b"\n\n"
    parts: list[str] = []
    if event is not None:
        if "\r" in event or "\n" in event:
            raise ValueError(f"SSE event type must not contain CR or LF: {event!r}")
        parts.append(f"event: {event}\n")
    if id_ is not None:
        if "\r" in id_ or "\n" in id_ or "\0" in id_:
            raise ValueError(f"SSE id must not contain CR, LF or NUL: {id_!r}")
        parts.append(f"id: {id_}\n")
    if retry is not None:
        if type(retry) is not int or retry < 0:
            raise ValueError(f"SSE retry must be a non-negative int: {retry!r}")
        parts.append(f"retry: {retry}\n")
    parts.extend([f"data: {line}\n" for line in _split_lines(data)])
    parts.append("\n")
    return "".join(parts).encode()


def encode_event(payload: dict[str, Any]) -> bytes:
    """A typed event as Responses and Anthropic frame it: an `event:` line naming the
    payload's `type`, and the payload as the JSON data."""
    kind: str = payload["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def encode_data(payload: bytes) -> bytes:
    """Frame one payload as a whole event: `data: <payload>` and a blank line.

    The hot-path helper for compact JSON. The payload is not checked: it must hold no
    CR or LF, or the client will see several lines (use `encode` for arbitrary text).
    """
    return b"data: " + payload + b"\n\n"
