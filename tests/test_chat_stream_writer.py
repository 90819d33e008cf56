"""The chat chunk writer renders each chunk's fixed envelope once per stream and encodes only
the delta: its events must be, byte for byte, orjson's encoding of the whole chunk."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from formats.chat.from_chat import ChatStreamWriter
from wire.sse import encode_data

# Unicode of every kind (astral, combining, RTL), quotes, backslashes, control characters.
TEXT = st.text(
    st.one_of(
        st.characters(),
        st.sampled_from(['"', "\\", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "\u2028", "é"]),
    ),
    max_size=40,
)
NONEMPTY = TEXT.filter(bool)
DELTA = st.one_of(
    st.tuples(st.just("content"), NONEMPTY),
    st.tuples(st.just("reasoning"), NONEMPTY),
    st.tuples(st.just("reasoning_signature"), NONEMPTY),
    st.tuples(st.just("reasoning_redacted"), NONEMPTY),
    st.tuples(st.just("tool_call"), st.integers(0, 300), TEXT, TEXT, TEXT),
    st.tuples(st.just("tool_arguments"), st.integers(0, 300), NONEMPTY),
    st.tuples(st.just("named"), TEXT, TEXT),
)


def whole_chunk(id: str, created: int, model: str, delta: dict[str, Any]) -> bytes:
    """The chunk as orjson renders it whole: the reference the writer must match."""
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    chunk = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": None,
    }
    return encode_data(orjson.dumps(chunk))


def expected_delta(step: tuple[Any, ...]) -> dict[str, Any]:
    kind = step[0]
    if kind == "tool_call":
        _, index, call_id, name, arguments = step
        function = {"name": name, "arguments": arguments}
        call = {"index": index, "id": call_id, "type": "function", "function": function}
        return {"content": None, "tool_calls": [call]}
    if kind == "tool_arguments":
        return {"tool_calls": [{"index": step[1], "function": {"arguments": step[2]}}]}
    if kind == "reasoning_redacted":
        return {kind: [step[1]]}
    return {kind: step[1]}


@given(
    id=NONEMPTY,
    model=TEXT,
    created=st.integers(1, 2**63 - 1),
    steps=st.lists(DELTA, min_size=1, max_size=12),
)
def test_each_chunk_is_byte_for_byte_orjsons_whole_encoding(
    id: str, model: str, created: int, steps: list[tuple[Any, ...]]
) -> None:
    writer = ChatStreamWriter(model, id=id, created=created)
    role_sent = False
    for step in steps:
        if step[0] == "named":  # the upstream names its model (and id) mid-stream
            _, model, new_id = step
            writer.named(model, new_id or None)
            id = new_id or id
            continue
        delta = expected_delta(step)
        if not role_sent:
            delta = {"role": "assistant", **delta}
            role_sent = True
        try:
            expected = whole_chunk(id, created, model, delta)
        except TypeError:  # a lone surrogate: not UTF-8, refused the same way by both
            with pytest.raises(TypeError):
                getattr(writer, step[0])(*step[1:])
            return
        assert getattr(writer, step[0])(*step[1:]) == expected
