"""How GenerateContentResponses go out: as SSE events, or as Gemini's JSON array.

With `?alt=sse`, data-only SSE events, CRLF-terminated as Gemini sends them
(`data: {...}\\r\\n\\r\\n`); without, one JSON array written as it grows (`[{...}`,
`,\\r\\n{...}`, ..., `]`), as Google's REST streaming does; JSON whitespace is free and
Google's own reader (google-api-core `rest_streaming`) finds each object by its braces.
`JsonArray` turns a Gemini upstream's SSE stream, relayed by its provider, into the array.
"""

from __future__ import annotations

from formats.translator import StreamTranslator
from wire.errors import GatewayError
from wire.sse import Event, SSEDecoder, SSEProtocolError
from wire.usage import Usage


class GeminiFraming:
    """GenerateContentResponses framed as SSE events or as one JSON array, object by object."""

    __slots__ = ("_count", "sse")

    def __init__(self, sse: bool) -> None:
        self.sse = sse
        self._count = 0  # responses framed

    def element(self, payload: bytes) -> bytes:
        """One response (its JSON) framed."""
        if self.sse:
            return b"data: " + payload + b"\r\n\r\n"
        prefix = b",\r\n" if self._count else b"["
        self._count += 1
        return prefix + payload

    def close(self) -> bytes:
        """The end of the stream: the array's `]` (nothing for SSE, which just ends)."""
        if self.sse:
            return b""
        return b"]" if self._count else b"[]"


class JsonArray:
    """A Gemini SSE stream (a provider's relay) as the JSON array, object by object; its end
    (`finished`, `failure`, `usage`) is the relay's."""

    __slots__ = ("_closed", "_decoder", "_framing", "_relay")

    def __init__(self, relay: StreamTranslator) -> None:
        self._relay = relay
        self._decoder = SSEDecoder()
        self._framing = GeminiFraming(sse=False)
        self._closed = False

    @property
    def finished(self) -> bool:
        return self._relay.finished

    @property
    def failure(self) -> GatewayError | None:
        return self._relay.failure

    @property
    def usage(self) -> Usage | None:
        return self._relay.usage

    @property
    def usage_so_far(self) -> Usage | None:
        return self._relay.usage_so_far

    @property
    def finish_reasons(self) -> tuple[str, ...]:
        return self._relay.finish_reasons

    def feed(self, data: bytes) -> bytes:
        return self._reframed(self._relay.feed(data))

    def end(self) -> bytes:
        return self._reframed(self._relay.end())

    def error_event(self, error: GatewayError) -> bytes | None:
        return self._reframed(self._relay.error_event(error) or b"")

    def _reframed(self, sse: bytes) -> bytes:
        """The relay's SSE bytes as array elements, and the array's end once it finished."""
        if self._closed:
            return b""
        try:
            items = self._decoder.feed(sse) if sse else []
        except SSEProtocolError:  # the relay only writes whole events: not expected
            items = []
        framing = self._framing
        out = [framing.element(item.data.encode()) for item in items if type(item) is Event]
        if self._relay.finished:
            self._closed = True
            out.append(framing.close())
        return b"".join(out)
