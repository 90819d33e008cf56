"""The JSON depth scan against the depth of the value itself: any value, any strings (full of
brackets, quotes and backslashes), wrapped to land on either side of the limit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wire import jsondepth
from wire.jsondepth import MAX_DEPTH, too_deep

tricky_text = st.text(alphabet='[]{}"\\ ab\n\u00e9', max_size=12)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | tricky_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(tricky_text, children, max_size=3)
    ),
    max_leaves=12,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


def wrap(value: Any, levels: int, in_object: bool) -> Any:
    for _ in range(levels):
        value = {'k[\\"': value} if in_object else [value, "]]"]
    return value


@settings(max_examples=300, deadline=None)
@given(
    value=values,
    levels=st.integers(MAX_DEPTH - 12, MAX_DEPTH + 4),
    in_object=st.booleans(),
    ensure_ascii=st.booleans(),
)
def test_too_deep_is_the_depth_of_the_value_past_the_limit(
    value: Any, levels: int, in_object: bool, ensure_ascii: bool
) -> None:
    wrapped = wrap(value, levels, in_object)
    data = json.dumps(wrapped, ensure_ascii=ensure_ascii).encode()
    assert too_deep(data) == (depth(wrapped) > MAX_DEPTH)


@given(value=values)
def test_shallow_values_are_never_too_deep(value: Any) -> None:
    assert not too_deep(json.dumps(value).encode())


def test_the_limit_itself() -> None:
    assert not too_deep(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    assert too_deep(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert too_deep(b"{" * 100_000)  # unbalanced, but its opening brackets alone are too deep
    assert not too_deep(b"]" * 100_000 + b"[" * 10)  # malformed: the decoder reports it


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bodies the linear scan answered for (the walk answers the others)."""
    seen: list[bytes] = []
    scan = jsondepth._scan

    def recorded(data: bytes) -> bool:
        seen.append(data)
        return scan(data)

    monkeypatch.setattr(jsondepth, "_scan", recorded)
    return seen


def test_valid_json_is_walked_not_scanned(scans: list[bytes]) -> None:
    body: dict[str, Any] = {"messages": [{"content": "[{" * 500}] * 20, "tools": [[[1]]] * 200}
    assert not too_deep(json.dumps(body).encode())
    assert not too_deep(json.dumps(wrap(body, 8, in_object=True)).encode())
    for levels, deep in [(MAX_DEPTH - 1, False), (MAX_DEPTH, True)]:
        body["metadata"] = wrap("leaf", levels, in_object=False)  # the body is one more
        assert too_deep(json.dumps(body).encode()) is deep
    assert scans == []


def test_a_deep_body_of_long_strings_is_left_to_the_scan(scans: list[bytes]) -> None:
    # Every level holds a long string: walked level by level, it would be read ~128 times.
    def body(levels: int) -> bytes:
        value: Any = "x"
        for _ in range(levels - 1):
            value = ["[{" * 2000, value]
        return json.dumps({"messages": value}).encode()

    assert not too_deep(body(MAX_DEPTH))
    assert too_deep(body(MAX_DEPTH + 1))
    assert len(scans) == 2


def test_malformed_json_is_left_to_the_scan(scans: list[bytes]) -> None:
    assert too_deep(b"[" * (MAX_DEPTH + 1) + b"1,]" + b"]" * MAX_DEPTH)
    assert not too_deep(b"[" * MAX_DEPTH + b"1,]" + b"]" * (MAX_DEPTH - 1) + b"[]")
    assert not too_deep(b'"' + b"[" * 200 + b"]" * 200)  # an unterminated string
    assert len(scans) == 3
