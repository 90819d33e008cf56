"""A generateContent stream before its first content: has it reached it yet, what may go before
it, and how it ends when it failed (`gemini_stream`): with `?alt=sse`, SSE events CRLF-ended
as Gemini ends its lines; without, Gemini's JSON array."""

from __future__ import annotations

from formats.first_content import event_content, every_byte
from formats.gemini.error_shape import gemini_error_body
from formats.gemini.framing import GeminiFraming
from formats.stream_format import SSE_HEADERS, StreamFormat
from wire.errors import GatewayError

# Only the SSE stream gets comments: the JSON array's keepalive would have to open it ("["),
# which a failover cannot take back.
KEEPALIVE = b": keepalive\r\n\r\n"
ARRAY_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-cache"}


def _sse_error(error: GatewayError) -> bytes:
    return GeminiFraming(True).element(gemini_error_body(error))


def _array_error(error: GatewayError) -> bytes:
    framing = GeminiFraming(False)
    return framing.element(gemini_error_body(error)) + framing.close()


SSE_STREAM = StreamFormat(SSE_HEADERS, event_content, KEEPALIVE, _sse_error)
ARRAY_STREAM = StreamFormat(ARRAY_HEADERS, every_byte, None, _array_error)


def gemini_stream(sse: bool) -> StreamFormat:
    """SSE: every event but an error is content; the JSON array: every byte."""
    return SSE_STREAM if sse else ARRAY_STREAM
