"""Why an answer ended, in OpenAI's words (`stop`, `length`, `tool_calls`, `content_filter`):
each API's own reasons mapped to them, for the translations and for what the gateway records
(the request's `finish_reasons`, the tracing and the access log)."""

from __future__ import annotations

from collections.abc import Mapping

# Anthropic's stop_reason. pause_turn (a server tool paused a long turn) ends this answer
# normally: the client continues by sending the turn back, as after "stop".
ANTHROPIC: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Gemini's finishReason.
GEMINI: Mapping[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


def mapped(table: Mapping[str, str], reason: str | None, *, called: bool = False) -> str:
    """OpenAI's finish_reason for an upstream's `reason` (unknown or none: "stop"); a turn
    that made tool calls and stopped normally is "tool_calls" (`called`)."""
    finish = table.get(reason or "", "stop")
    return "tool_calls" if called and finish == "stop" else finish
