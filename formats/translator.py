"""How a stream is translated, sans-IO: the contracts, and the base every translation builds on.

`StreamTranslator` is what the relay pumps an upstream's bytes through, for one request: client
bytes out, and the stream's end (`finished`, `failure`, `usage`, `finish_reasons`). `ChatSink`
is where a translated chat stream goes, one typed delta at a time: the chat writer
(`formats.chat.from_chat.ChatStreamWriter`) encodes OpenAI's chunks, and the bridges to the
Responses, Anthropic and Gemini formats build their own events from the same deltas.

An `EventTranslator` owns what every translating provider's stream does the same way: the
framing (SSE, NDJSON lines, AWS event-stream frames) that cuts the bytes into items, `feed` and
`end`, the terminal state (`finished`, `failure`, `usage`, `finish_reasons`), and the error
events. The provider subclass only handles one item at a time (`handle`), turning it into
deltas on its `ChatSink`; an item whose kind it names in `events` is decoded there by that
kind's struct first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import msgspec

from wire.errors import GatewayError, UpstreamProtocolError, drop_tracebacks
from wire.finish_reasons import mapped
from wire.jsondepth import MAX_DEPTH
from wire.sse import SSEProtocolError, encode_data
from wire.usage import Usage


class StreamTranslator(Protocol):
    """Sans-IO: upstream stream bytes in, client SSE bytes out, for one request."""

    @property
    def finished(self) -> bool:
        """True once the terminal event went out ([DONE] or an error event): stop reading."""
        ...

    @property
    def failure(self) -> GatewayError | None:
        """The error the stream ended with, once its error event went out: before any content
        reached the client, the dispatcher takes it as a failed attempt instead."""
        ...

    @property
    def usage(self) -> Usage | None:
        """The tokens the stream reported so far (all of them once it finished), for limits
        and metrics; None when the upstream gave none."""
        ...

    @property
    def usage_so_far(self) -> Usage | None:
        """For a stream cut before its usage: the counts the upstream had reported by then
        (Anthropic's input in message_start, Gemini's latest usageMetadata). Its input counts
        are the upstream's; its output count too unless it is `estimated` (not known yet)."""
        ...

    @property
    def finish_reasons(self) -> tuple[str, ...]:
        """Why the answer ended, in OpenAI's words, one per choice (as the final event said):
        read once the stream ended; () when the upstream said none."""
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

    def finish(self, finish_reason: str, usage: Usage | None) -> bytes:
        """The answer ended normally: OpenAI's finish_reason, and the tokens it used."""
        ...

    def error(self, error: GatewayError) -> bytes:
        """The stream failed: its final error event."""
        ...

    def comment(self, text: str) -> bytes:
        """An upstream's SSE comment (a keepalive)."""
        ...


Item = TypeVar("Item")
Item_co = TypeVar("Item_co", covariant=True)


class Framing(Protocol[Item_co]):
    """Cuts a stream's bytes into items; raises UpstreamProtocolError (or SSEProtocolError)
    for bytes it refuses to hold."""

    def feed(self, data: bytes) -> Iterable[Item_co]: ...

    @property
    def pending(self) -> bool:
        """Bytes of an unfinished item are held: at the end, the stream was cut inside it."""
        ...


# An event kind's decoder, and its handler (called with the translator and the payload).
Route = tuple[Callable[[Any], Any], Callable[[Any, Any], bytes]]


def openai_error_event(error: GatewayError) -> bytes:
    """The event that ends an OpenAI stream that failed: the error body as its data."""
    return encode_data(error.to_json())


class StreamEnd:
    """How every stream translator ends: `finished` once its terminal event went out, and
    `failure`, the error its error event reported (`error_event`, in the client's format:
    `error_bytes`, OpenAI's error event unless a subclass speaks another)."""

    def __init__(self, provider: str = "") -> None:
        self.finished = False
        self.failure: GatewayError | None = None  # the error this stream ended with
        self.provider = provider

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} provider={self.provider!r} finished={self.finished} "
            f"failure={self.failure!r}>"
        )

    @property
    def usage_so_far(self) -> Usage | None:
        """None: this stream reports nothing before its end (`StreamTranslator`)."""
        return None

    def error_event(self, error: GatewayError) -> bytes:
        self.finished = True
        # Kept, and maybe raised through `feed`: its frames would hold this translator and the
        # bytes it was fed, in a cycle only a full collection frees.
        drop_tracebacks(error)
        self.failure = error
        return self.error_bytes(error)

    def error_bytes(self, error: GatewayError) -> bytes:
        return openai_error_event(error)

    def nested_too_deep(self) -> bytes:
        """The error event for an upstream event that nests deeper than the gateway reads."""
        return self.error_event(
            UpstreamProtocolError(
                f"Provider {self.provider!r} sent an event nested deeper than {MAX_DEPTH} levels."
            )
        )


class EventTranslator(StreamEnd, Generic[Item]):
    """One translated stream (a `StreamTranslator`), written to `sink`.

    Subclasses set `unit` and `terminal` (for the messages of a cut stream) and implement
    `handle`; `events` routes the kinds they decode with `decode`.
    """

    unit: ClassVar[str] = "an event"  # what the framing cuts the stream into
    terminal: ClassVar[str]  # what ends the stream ("message_stop event")
    events: ClassVar[Mapping[str, Route]] = {}

    def __init__(self, provider: str, sink: ChatSink, framing: Framing[Item]) -> None:
        super().__init__(provider)
        self.usage: Usage | None = None  # once finished
        self.finish_reasons: tuple[str, ...] = ()  # once finished
        self.sink = sink
        self._framing = framing
        self._opened = False

    def feed(self, data: bytes) -> bytes:
        if self.finished:
            return b""
        out = [self._open()]
        try:
            for item in self._framing.feed(data):
                out.append(self.handle(item))
                if self.finished:
                    break
        except SSEProtocolError as exc:
            out.append(self.error_event(UpstreamProtocolError(str(exc))))
        except UpstreamProtocolError as error:
            out.append(self.error_event(error))
        return b"".join(out)

    def end(self) -> bytes:
        if self.finished:
            return b""
        return self._open() + self.ended()

    def error_bytes(self, error: GatewayError) -> bytes:
        return self.sink.error(error)

    # --- for the subclasses ---

    def handle(self, item: Item) -> bytes:
        """The client bytes for one item of the stream."""
        raise NotImplementedError

    def ended(self) -> bytes:
        """The upstream closed the stream before its terminal item: an error event, unless
        the subclass knows the answer is whole."""
        if self._framing.pending:
            return self.error_event(
                UpstreamProtocolError(
                    f"Provider {self.provider!r} closed the stream in the middle of {self.unit}."
                )
            )
        return self.error_event(
            UpstreamProtocolError(
                f"Provider {self.provider!r} closed the stream before it finished "
                f"(no {self.terminal})."
            )
        )

    def finish(self, finish_reason: str, usage: Usage | None) -> bytes:
        """The answer's end: OpenAI's finish_reason, and the tokens it used."""
        self.finished = True
        self.usage = usage
        self.finish_reasons = (finish_reason,)
        return self.sink.finish(finish_reason, usage)

    def decode(self, kind: str, data: str | bytes) -> bytes:
        """An item of a kind in `events`, decoded by its struct and handled; others (pings,
        kinds the upstream added later) are skipped."""
        route = self.events.get(kind)
        if route is None:
            return b""
        decode, handle = route
        try:
            payload = decode(data)
        except msgspec.DecodeError:
            return self.malformed(f"{kind} event", data)
        return handle(self, payload)

    def malformed(self, what: str, data: str | bytes) -> bytes:
        """The error event for an item that cannot be read."""
        return self.error_event(
            UpstreamProtocolError(
                f"Provider {self.provider!r} sent a malformed {what}: {data[:200]!r}"
            )
        )

    def _open(self) -> bytes:
        if self._opened:
            return b""
        self._opened = True
        return self.sink.opening()


def finish_reason(table: Mapping[str, str], reason: str | None, *, called: bool = False) -> str:
    """OpenAI's finish_reason for an upstream's `reason` (unknown or none: "stop"); a turn
    that made tool calls and stopped normally is "tool_calls" (`called`)."""
    return mapped(table, reason, called=called)
