"""The mappings the translating providers share; each provider keeps its own tables as data.

- `finish_reason`: an upstream's stop reason through its table to OpenAI's finish_reason;
- `cached_usage`: OpenAI's usage for an upstream that counts cached input apart from the rest
  (Anthropic, Bedrock);
- `message_error`: an error answer whose body is `{"message": ...}` (Cohere, Bedrock).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from formats.chat.from_chat import usage
from wire.errors import UpstreamError, error_text, relayed_error


def finish_reason(table: Mapping[str, str], reason: str | None, *, called: bool = False) -> str:
    """OpenAI's finish_reason for an upstream's `reason` (unknown or none: "stop"); a turn
    that made tool calls and stopped normally is "tool_calls" (`called`)."""
    finish = table.get(reason or "", "stop")
    return "tool_calls" if called and finish == "stop" else finish


def cached_usage(
    input_tokens: int, output_tokens: int, cache_read: int | None, cache_write: int | None
) -> dict[str, Any]:
    """OpenAI's usage for counts whose `input_tokens` leave out the cache reads and writes:
    OpenAI's prompt_tokens count every input token."""
    return usage(
        input_tokens + (cache_read or 0) + (cache_write or 0),
        output_tokens,
        cached_tokens=cache_read,
        cache_creation_tokens=cache_write,
    )


class _MessageBody(msgspec.Struct, gc=False):
    message: str | None = None
    Message: str | None = None  # some AWS front ends capitalise it


_decode_message = msgspec.json.Decoder(_MessageBody).decode


def error_message(body: bytes) -> str | None:
    """The `message` of a `{"message": ...}` body, else the body's text."""
    try:
        parsed = _decode_message(body)
    except msgspec.DecodeError:
        return error_text(body) or None
    return parsed.message or parsed.Message


def message_error(
    status: int, body: bytes, provider: str, *, code: str | None = None
) -> UpstreamError:
    """A `{"message": ...}` error answer as ours, its status relayed."""
    return relayed_error(status, error_message(body), provider, code=code)
