"""A Messages stream before its first content: has it reached it yet, what may go before it
(Anthropic's ping), and how it ends when it failed (`MESSAGES_STREAM`)."""

from __future__ import annotations

from formats.anthropic.error_shape import anthropic_error_event
from formats.first_content import ContentProbe, TypedEvents
from formats.stream_format import SSE_HEADERS, StreamFormat

# Before the first content an Anthropic stream sends message_start, pings and the start of
# its first block (a tool_use block's input follows in deltas).
MESSAGES_PREAMBLE = frozenset({"message_start", "ping", "content_block_start"})


# Anthropic's keepalive, as its streams carry it ("Event streams may also include any number
# of ping events"): what a Messages stream can send while it waits for its first event.
PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def messages_content() -> ContentProbe:
    return TypedEvents(MESSAGES_PREAMBLE)


MESSAGES_STREAM = StreamFormat(SSE_HEADERS, messages_content, PING, anthropic_error_event)
