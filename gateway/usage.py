"""Token counts from an answer's usage, whatever its shape (chat, Responses, embeddings,
Anthropic's Messages, Gemini's usageMetadata)."""

from __future__ import annotations

from typing import Any

import msgspec

from formats.gemini.to_chat import UsageMetadata, chat_usage


class _Answer(msgspec.Struct, gc=False):
    usage: dict[str, Any] | None = None  # msgspec skips every other field
    usage_metadata: UsageMetadata | None = msgspec.field(default=None, name="usageMetadata")


_answer = msgspec.json.Decoder(_Answer)


def usage_of(body: bytes) -> dict[str, Any] | None:
    """The `usage` object of a whole JSON answer (Gemini's counts as OpenAI's), if it has one."""
    try:
        answer = _answer.decode(body)
    except msgspec.DecodeError:
        return None
    return answer.usage or chat_usage(answer.usage_metadata)


def token_counts(usage: dict[str, Any] | None) -> tuple[int, int]:
    """(input, output) tokens: chat's prompt/completion or Responses' input/output."""
    if not usage:
        return 0, 0
    inputs = usage.get("prompt_tokens", usage.get("input_tokens"))
    outputs = usage.get("completion_tokens", usage.get("output_tokens"))
    if inputs is None and outputs is None:
        total = usage.get("total_tokens")
        return (total if isinstance(total, int) else 0), 0
    return (
        inputs if isinstance(inputs, int) else 0,
        outputs if isinstance(outputs, int) else 0,
    )
