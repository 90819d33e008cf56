"""The tokens an answer used: one typed `Usage`, whatever API reported them.

Every translator returns one (`StreamTranslator.usage`), and everything after reads it: limits,
metrics, the access log, the console. The readers here take each API's usage shape once:

- OpenAI's chat, completions and embeddings (`prompt_tokens`, `completion_tokens` and their
  `*_details`), and its Responses API (`input_tokens`, `output_tokens` and theirs): `input`
  counts every input token, cached ones included (`from_openai`);
- Anthropic's (`input_tokens` without the cache reads and writes, counted apart:
  `from_anthropic`, and `from_openai` for a Message's `usage` object);
- Gemini's `usageMetadata` (thoughts counted apart from the candidates: `from_gemini`);
- a whole JSON answer's, whichever of those it holds (`usage_of`; with its finish reasons,
  in the same decode: `answer_end`).

Writing a usage in an API's shape is its format's business (`formats.*.from_chat`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from wire.finish_reasons import ANTHROPIC, GEMINI, mapped


class Usage(msgspec.Struct, frozen=True, gc=False):
    """Tokens one answer used."""

    input: int = 0  # every input token, cached ones included
    output: int = 0  # every output token, reasoning included
    cache_read: int | None = None  # input tokens read from the provider's prompt cache
    cache_write: int | None = None  # input tokens written to it
    reasoning: int | None = None  # output tokens the model spent thinking
    estimated: bool = False  # counted by the gateway, not reported by the upstream

    @property
    def total(self) -> int:
        return self.input + self.output


def from_anthropic(
    input: int, output: int, cache_read: int | None, cache_write: int | None
) -> Usage:
    """Counts whose `input` leaves out the cache reads and writes (Anthropic's, Bedrock's)."""
    return Usage(input + (cache_read or 0) + (cache_write or 0), output, cache_read, cache_write)


def from_gemini(
    prompt: int, candidates: int, thoughts: int | None, cached: int | None, tool_prompt: int = 0
) -> Usage:
    """A `usageMetadata`: thoughts and tool-use prompts are counted apart; we count them in."""
    return Usage(prompt + tool_prompt, candidates + (thoughts or 0), cached, None, thoughts)


def from_openai(usage: Mapping[str, Any] | None) -> Usage | None:
    """A `usage` object of OpenAI's chat, completions, embeddings or Responses API, or of an
    Anthropic Message; None when it says nothing of tokens."""
    if not usage:
        return None
    if "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage:
        return from_anthropic(
            _int(usage.get("input_tokens")),
            _int(usage.get("output_tokens")),
            _count(usage.get("cache_read_input_tokens")),
            _count(usage.get("cache_creation_input_tokens")),
        )
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    if prompt is None and completion is None:
        total = usage.get("total_tokens")
        return Usage(_int(total)) if total is not None else None
    inputs = _details(usage, "prompt_tokens_details", "input_tokens_details")
    outputs = _details(usage, "completion_tokens_details", "output_tokens_details")
    return Usage(
        _int(prompt),
        _int(completion),
        # DeepSeek reports its cache hits in a field of its own.
        _count(inputs.get("cached_tokens", usage.get("prompt_cache_hit_tokens"))),
        _count(inputs.get("cache_creation_tokens", inputs.get("cache_write_tokens"))),
        _count(outputs.get("reasoning_tokens")),
    )


class UsageMetadata(msgspec.Struct, rename="camel", gc=False):
    """Gemini's `usageMetadata`, streamed or whole: the counts its Usage is made of."""

    prompt_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int | None = None
    cached_content_token_count: int | None = None
    tool_use_prompt_token_count: int = 0


class _Choice(msgspec.Struct, gc=False):
    finish_reason: str | None = None  # OpenAI's


class _Candidate(msgspec.Struct, gc=False):
    finish_reason: str | None = msgspec.field(default=None, name="finishReason")  # Gemini's


class _Answer(msgspec.Struct, gc=False):
    usage: dict[str, Any] | None = None  # msgspec skips every other field
    usage_metadata: UsageMetadata | None = msgspec.field(default=None, name="usageMetadata")
    choices: list[_Choice] | None = None
    stop_reason: str | None = None  # Anthropic's
    candidates: list[_Candidate] | None = None


_answer = msgspec.json.Decoder(_Answer)


class AnswerEnd(msgspec.Struct, frozen=True, gc=False):
    """What a whole answer says of itself once it ended: its tokens, and why it ended."""

    usage: Usage | None = None
    finish_reasons: tuple[str, ...] = ()  # OpenAI's words, one per choice


def answer_end(body: bytes) -> AnswerEnd:
    """The usage and finish reasons a whole JSON answer reports (OpenAI's, Anthropic's or
    Gemini's), in one decode."""
    try:
        answer = _answer.decode(body)
    except msgspec.DecodeError:
        return AnswerEnd()
    usage = from_openai(answer.usage) if answer.usage else None
    if usage is None:
        usage = from_usage_metadata(answer.usage_metadata)
    if answer.choices is not None:
        reasons = tuple(c.finish_reason for c in answer.choices if c.finish_reason)
    elif answer.stop_reason is not None:
        reasons = (mapped(ANTHROPIC, answer.stop_reason),)
    else:
        reasons = tuple(
            mapped(GEMINI, c.finish_reason) for c in answer.candidates or () if c.finish_reason
        )
    return AnswerEnd(usage, reasons)


def usage_of(body: bytes) -> Usage | None:
    """The usage a whole JSON answer reports (OpenAI's, Anthropic's or Gemini's), if any."""
    return answer_end(body).usage


def from_usage_metadata(meta: UsageMetadata | None) -> Usage | None:
    """The tokens a Gemini usageMetadata counts: thoughts count as output."""
    if meta is None:
        return None
    return from_gemini(
        meta.prompt_token_count,
        meta.candidates_token_count,
        meta.thoughts_token_count,
        meta.cached_content_token_count,
        meta.tool_use_prompt_token_count,
    )


def _details(usage: Mapping[str, Any], *names: str) -> Mapping[str, Any]:
    for name in names:
        details = usage.get(name)
        if isinstance(details, Mapping):
            return details
    return {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) else None
