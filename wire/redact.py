"""Secrets out of error messages: the configured keys, and anything shaped like a key.

An upstream may echo the key it was sent ("Incorrect API key provided: sk-..."), and every
relayed message passes through `GatewayError`, so redacting there covers every provider. The
set of secrets is process-wide: it is filled from the config when an app is built
(`gateway.server.config_secrets.add_config_secrets`), and only ever grows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "[redacted]"
# Shapes of keys worth hiding even when they are not ours: OpenAI and Anthropic (sk-...,
# including OpenAI's own masked echo sk-proj-****abcd), Google (AIza...), AWS access key ids,
# and bearer tokens.
_SHAPES = (
    r"\bsk-[A-Za-z0-9_*\-]{6,}",
    r"\bAIza[0-9A-Za-z_\-]{20,}",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{12,}",
    r"(?i:\bbearer\s+)[A-Za-z0-9._~+/=\-]{8,}",
)
# Shorter values are not credentials, and hiding them would mangle messages.
_MIN_SECRET = 8

_secrets: set[str] = set()
_pattern = re.compile("|".join(_SHAPES))


def add_secrets(values: Iterable[str | None]) -> None:
    global _pattern
    new = {value for value in values if value and len(value) >= _MIN_SECRET} - _secrets
    if not new:
        return
    _secrets.update(new)
    # Longest first, so that a secret containing another is hidden whole.
    literal = [re.escape(value) for value in sorted(_secrets, key=len, reverse=True)]
    _pattern = re.compile("|".join((*literal, *_SHAPES)))


def redact(text: str) -> str:
    return _pattern.sub(MASK, text)
