"""What a request may use at most, in tokens, read before any upstream is called: the bound a
key with `max_spend` reserves.

- Input: the body's size in bytes / 4, OpenAI's rule of thumb for English (about four
  characters a token), which wire/tokens.py's estimate matches for prose (25,005 against
  25,785 tokens for a 103 kB conversation) at no cost: that estimate takes 15 ms per 100 kB,
  too much to run on every request. JSON's quotes and keys make it err high; text outside
  ASCII (3 bytes a character, about a token each) errs low by up to a quarter, which pricing
  the input at the output's rate (gateway.policy.pricing.prices) covers.
- Output: the request's own cap (`max_completion_tokens`, `max_tokens`, `max_output_tokens`,
  Gemini's `generationConfig.maxOutputTokens`), times the choices asked for (`n`,
  `candidateCount`); without a cap, `[pricing] default_max_tokens` (the caller's).
"""

from __future__ import annotations

from typing import Any

import msgspec

from wire.operations import RawBody

BYTES_PER_TOKEN = 4
# Fields that cap the output, in the order an upstream reads them (OpenAI's chat API takes
# max_completion_tokens over the older max_tokens).
_CAPS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
_GEMINI = "generationConfig"
_int = msgspec.json.Decoder(int | None)
_object = msgspec.json.Decoder(dict[str, Any] | None)


class Ask(msgspec.Struct, frozen=True, gc=False):
    """The most a request may use: its input (estimated) and its output cap (None: it names
    none), over all the choices it asks for."""

    input_tokens: int
    max_output_tokens: int | None
    choices: int = 1

    def most_output(self, default: int) -> int:
        return (self.max_output_tokens or default) * self.choices


def ask_of(body: RawBody) -> Ask:
    """A parsed body's bound (its values are raw JSON; a value of the wrong type is left for
    the route or the upstream to refuse, and counts as absent here)."""
    size = sum(len(raw) for raw in body.values())
    cap = next((value for name in _CAPS if (value := _positive(body, name))), None)
    choices = _positive(body, "n") or 1
    gemini = _decode(_object, body.get(_GEMINI))
    if isinstance(gemini, dict):
        cap = cap or _whole(gemini.get("maxOutputTokens"))
        choices = _whole(gemini.get("candidateCount")) or choices
    return Ask(size // BYTES_PER_TOKEN, cap, choices)


def _positive(body: RawBody, name: str) -> int | None:
    return _whole(_decode(_int, body.get(name)))


def _whole(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _decode(decoder: msgspec.json.Decoder[Any], raw: msgspec.Raw | None) -> Any:
    if raw is None:
        return None
    try:
        return decoder.decode(raw)
    except msgspec.DecodeError:  # ValidationError too: a wrong type counts as absent
        return None
