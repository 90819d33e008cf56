"""Has a generateContent stream reached its first content yet, and what may go before it."""

from __future__ import annotations

from collections.abc import Callable

from formats.first_content import ContentProbe, event_content, every_byte

# Only the SSE stream gets comments, CRLF-ended as Gemini ends its lines: the JSON array's
# keepalive would have to open it ("["), which a failover cannot take back.
KEEPALIVE = b": keepalive\r\n\r\n"


def gemini_content(sse: bool) -> Callable[[], ContentProbe]:
    """The probe's maker. SSE: every event but an error is content; the JSON array: every
    byte."""
    return event_content if sse else every_byte
