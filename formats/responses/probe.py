"""Has a Responses stream reached its first content yet?"""

from __future__ import annotations

from formats.first_content import ContentProbe, TypedEvents

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
