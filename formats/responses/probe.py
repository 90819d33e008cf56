"""A Responses stream before its first content: has it reached it yet, what may go before it,
and how it ends when it failed (`RESPONSES_STREAM`)."""

from __future__ import annotations

from formats.chat.probe import KEEPALIVE_COMMENT
from formats.first_content import ContentProbe, TypedEvents
from formats.responses.error_shape import responses_error_event
from formats.stream_format import SSE_HEADERS, StreamFormat

# What a Responses stream sends before its first delta (platform.openai.com/docs/api-reference/
# responses-streaming): an item or part announced is not yet content.
RESPONSES_PREAMBLE = frozenset(
    {
        "response.created",
        "response.in_progress",
        "response.queued",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_summary_part.added",
    }
)


def responses_content() -> ContentProbe:
    return TypedEvents(RESPONSES_PREAMBLE)


RESPONSES_STREAM = StreamFormat(
    SSE_HEADERS, responses_content, KEEPALIVE_COMMENT, responses_error_event
)
