"""Token counts from an answer's usage, whatever its shape (chat, Responses, embeddings)."""

from __future__ import annotations

from typing import Any

import msgspec


class _Answer(msgspec.Struct, gc=False):
    usage: dict[str, Any] | None = None  # msgspec skips every other field


_answer = msgspec.json.Decoder(_Answer)


def usage_of(body: bytes) -> dict[str, Any] | None:
    """The `usage` object of a whole JSON answer, if it has one."""
    try:
        return _answer.decode(body).usage
    except msgspec.DecodeError:
        return None


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
