"""How deep JSON nests, found before any decoder recurses into it.

msgspec and orjson recurse once per level: a body nested ~1,000 deep is a RecursionError in
msgspec (even for a value it only skips), and orjson refuses 1,024 levels to read and 254 to
write. So nesting is bounded up front, at serde_json's default of 128 levels (.NET's
System.Text.Json allows 64): a tool's JSON schema nests a few dozen at most.

Bodies with fewer than `MAX_DEPTH` brackets are shallow by count. Others are walked with
msgspec: each container is split into its values as `Raw` (skipped at C speed, strings
never looked into) and only values long enough to hide the remaining depth are opened. A
body msgspec cannot read, or one whose walk would re-read it too often, gets a linear scan
of its bytes instead (slower: it must find the strings itself).
"""

from __future__ import annotations

import msgspec

MAX_DEPTH = 128

_WALK_BUDGET = 12  # times the body's length the walk may read (3x to 6x for agents' bodies)
_children = msgspec.json.Decoder(list[msgspec.Raw] | dict[str, msgspec.Raw])
_CONTAINERS = (b"[", b"{")
_OPEN_RUN = b"[" * (MAX_DEPTH + 1)
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")  # depth does not care which kind of bracket
_NOT_STRUCTURE = bytes(range(256)).translate(None, b'[]{}"')


class _OverBudget(Exception):
    pass


def too_deep(data: bytes) -> bool:
    """True when `data` (JSON, or what claims to be) nests deeper than `MAX_DEPTH`.

    Malformed JSON with unbalanced brackets is left to the decoder to report, unless its
    opening brackets alone already nest too deep.
    """
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return False
    try:
        return _nests_deeper(data, MAX_DEPTH, [_WALK_BUDGET * len(data)])
    except (msgspec.MsgspecError, RecursionError, _OverBudget):
        return _scan(data)


def _nests_deeper(container: bytes | msgspec.Raw, allowed: int, budget: list[int]) -> bool:
    """Whether `container`, a JSON array or object, holds more than `allowed` levels below
    it. `budget` is what may still be read, shared by the whole walk."""
    if allowed == 0:
        return True
    budget[0] -= len(container)
    if budget[0] < 0:  # (depth) x (length): a deep body of long strings, say
        raise _OverBudget
    values = _children.decode(container)
    for value in values.values() if isinstance(values, dict) else values:
        # A value of 2n bytes or fewer nests n levels at most; a scalar none.
        if (
            len(value) > 2 * (allowed - 1)
            and bytes(memoryview(value)[:1]) in _CONTAINERS
            and _nests_deeper(value, allowed - 1, budget)
        ):
            return True
    return False


def _scan(data: bytes) -> bool:
    """The depth of any bytes, JSON or not, at C speed on bytes: only brackets outside strings
    are kept, and innermost pairs removed one level per pass."""
    # Escaped backslashes and quotes go first, so that the remaining quotes delimit strings;
    # then all but brackets and quotes (numbers, text), and what is between quotes.
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = unescaped.translate(None, _NOT_STRUCTURE)  # without a table: the fast path
    brackets = b"".join(structure.split(b'"')[::2]).translate(_AS_SQUARE)
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
