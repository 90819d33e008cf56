"""Token counts estimated offline, for when no provider counted them.

Used where a count is needed and no upstream gives one: a token-counting route asked of a
provider without one (Anthropic's `count_tokens`, Gemini's `countTokens`), and the output of a
stream cut before its usage arrived. Every such count is reported as an estimate.

No tokenizer that covers every provider's models works offline (tiktoken downloads its tables
on first use; Anthropic's and Google's are not public), so this is a documented heuristic shaped
like a BPE pre-tokenizer (GPT-4o's o200k splits text the same way before merging):

- a run of ASCII letters is one token per 8 letters or part of it (vocabularies hold common
  words whole, a space before them included; long words split);
- digits go in groups of up to 3, one token each (as o200k and cl100k split them);
- any other visible character (punctuation, a CJK ideograph, an emoji) is one token;
- a run of white space is one token when it is longer than one space (indentation, newlines),
  none otherwise (a single space merges into the word after it).

English prose comes out near OpenAI's rule of thumb of four characters a token
(tests/test_tokens.py); text full of rare long words errs high. JSON values count their keys
and strings, and one token per value for its structure (quotes, colons, commas and brackets
mostly merge).
"""

from __future__ import annotations

import re
from typing import Any

_PIECES = re.compile(r"[A-Za-z]+|[0-9]{1,3}|\s+|[^\sA-Za-z0-9]")
_LETTERS_PER_TOKEN = 8
# Chat formats wrap each message in a few tokens of their own (role, separators): OpenAI's
# cookbook counts 3 per message, and 3 more priming the reply.
PER_MESSAGE = 3
PER_REQUEST = 3


def estimate_text(text: str) -> int:
    """Tokens in `text`, estimated."""
    tokens = 0
    for piece in _PIECES.findall(text):
        first = piece[0]
        if first.isspace():
            tokens += piece != " "
        elif first.isascii() and first.isalpha():
            tokens += -(-len(piece) // _LETTERS_PER_TOKEN)
        else:
            tokens += 1
    return tokens


def estimate_json(value: Any) -> int:
    """Tokens in a decoded JSON value (a tool's schema, a message's parts), estimated."""
    if isinstance(value, str):
        return estimate_text(value) + 1
    if isinstance(value, dict):
        return 1 + sum(estimate_text(str(k)) + estimate_json(v) for k, v in value.items())
    if isinstance(value, list):
        return 1 + sum(estimate_json(item) for item in value)
    if value is None or isinstance(value, bool):
        return 1
    return estimate_text(str(value))


def estimate_streamed(relayed: int, event_size: int) -> int:
    """The output tokens of a stream cut before the upstream reported its usage.

    `relayed` is what the stream wrote from its first content event on (aiohttp's own count
    of bytes written), `event_size` that event's size on the wire; both sampled once, as the
    stream was committed (formats.first_content.content_start): no per-chunk work. A stream's
    events are about the same size (the same id, model and field names around one delta), and
    OpenAI-compatible servers stream about one token per event, so the events relayed are the
    tokens. It errs high by a write the client no longer took, and low for an upstream that
    packs several tokens per event (Anthropic's and Gemini's deltas, usually a few).
    """
    if relayed <= 0 or event_size <= 0:
        return 0
    return max(1, round(relayed / event_size))
