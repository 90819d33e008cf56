"""Integers past 64 bits, found where a body is read, before a translation meets one.

msgspec and orjson read an integer of any size but write only those in [-2**63, 2**64): a
body holding a larger one passed the gateway's checks, then failed when a provider's request
was written (a 500), or went upstream to a server that reads 64 bits (most do) to be misread.
So such a body is refused where it is read, whatever field holds the number.

The scan costs ~1.5 ms per MiB, at C speed: digits become "0" and all else a space, and only a
body with 19 digits in a row (2**63 has 19) is looked at further: outside strings, each
integer of 19 digits or more is compared with the range.
"""

from __future__ import annotations

import re

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1

_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19
# An integer token: not part of a fraction or an exponent, nor followed by one.
_LONG_INTEGER = re.compile(rb"(?<![\w.+-])-?\d{19,}(?![\w.])")


def out_of_range(data: bytes) -> int | None:
    """The first integer in the JSON text `data` (valid JSON) that 64 bits cannot hold."""
    if _LONG_RUN not in data.translate(_DIGITS):
        return None
    # Escaped backslashes and quotes first, so that the remaining quotes delimit strings.
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside_strings = b" ".join(unescaped.split(b'"')[::2])
    for token in _LONG_INTEGER.findall(outside_strings):
        value = int(token)
        if not INT_MIN <= value <= INT_MAX:
            return value
    return None
