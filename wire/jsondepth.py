"""How deep JSON nests, found before any decoder recurses into it.

msgspec and orjson recurse once per level: a body nested ~1,000 deep is a RecursionError in
msgspec (even for a value it only skips), and orjson refuses 1,024 levels to read and 254 to
write. So nesting is bounded up front, at serde_json's default of 128 levels (.NET's
System.Text.Json allows 64): a tool's JSON schema nests a few dozen at most.

The scan runs at C speed on bytes: only brackets outside strings are kept, and innermost
pairs removed one level per pass. Bodies with fewer than `MAX_DEPTH` brackets skip it.
"""

from __future__ import annotations

MAX_DEPTH = 128

_OPEN_RUN = b"[" * (MAX_DEPTH + 1)
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")  # depth does not care which kind of bracket
_NOT_STRUCTURE = bytes(range(256)).translate(None, b'[]{}"')


def too_deep(data: bytes) -> bool:
    """True when `data` (JSON, or what claims to be) nests deeper than `MAX_DEPTH`.

    Malformed JSON with unbalanced brackets is left to the decoder to report, unless its
    opening brackets alone already nest too deep.
    """
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return False
    # Escaped backslashes and quotes go first, so that the remaining quotes delimit strings;
    # then all but brackets and quotes (numbers, text), and what is between quotes.
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(unescaped.translate(_AS_SQUARE, _NOT_STRUCTURE).split(b'"')[::2])
    # Each pass takes every innermost pair away, so the depth drops by exactly one per pass.
    for passes in range(MAX_DEPTH):
        if _OPEN_RUN[passes:] in brackets:  # opens in a row, on top of what passes took
            return True
        inner = brackets.replace(b"[]", b"")
        if not inner:
            return False
        if len(inner) == len(brackets):  # unbalanced ("]][["): its run was just checked
            return False
        brackets = inner
    return True
