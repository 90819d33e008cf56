"""The first-content probes: the regex fast path never says "content" where a full parse of
the same events would not (a false "content" would only commit a stream early, but the probe
is meant to be exact on what chat servers send)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from formats.chat.probe import ChatContent, _chat_content, chat_content
from formats.first_content import TypedEvents, content_start
from gateway.routes.messages import MESSAGES_PREAMBLE
from tests.chat_answers import split

deltas = st.fixed_dictionaries(
    {},
    optional={
        "role": st.just("assistant"),
        "content": st.one_of(st.none(), st.text(max_size=5)),
        "refusal": st.one_of(st.none(), st.text(max_size=3)),
        "reasoning_content": st.one_of(st.none(), st.text(max_size=3)),
        "tool_calls": st.one_of(
            st.none(),
            st.just([]),
            st.just([{"index": 0, "function": {"arguments": '{"content":"x"}'}}]),
        ),
    },
)
choices = st.builds(
    lambda delta, finish: {"index": 0, "delta": delta, "finish_reason": finish},
    deltas,
    st.sampled_from([None, None, "stop"]),
)
chunks = st.builds(
    lambda cs, usage: {"id": "c", "choices": cs, "usage": usage},
    st.lists(choices, max_size=2),
    st.sampled_from([None, {"prompt_tokens": 1}]),
)


def _events(items: list[dict[str, Any]], spaced: bool) -> bytes:
    options = orjson.OPT_INDENT_2 if spaced else 0
    return b"".join(
        b"data: " + orjson.dumps(item, option=options).replace(b"\n", b"") + b"\n\n"
        for item in items
    )


@given(st.lists(chunks, min_size=1, max_size=4), st.booleans())
def test_the_fast_path_agrees_with_a_full_parse(items: list[dict[str, Any]], spaced: bool) -> None:
    out = _events(items, spaced)
    expected = any(_chat_content(orjson.dumps(item).decode()) for item in items)
    assert ChatContent()(out) is expected


def test_a_role_chunk_is_no_content_and_a_token_is() -> None:
    probe = chat_content()
    assert not probe(b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n')
    assert probe(b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n')


def test_an_error_event_is_never_content() -> None:
    assert not chat_content()(b'data: {"error":{"message":"boom","content":"x"}}\n\n')


class _DecodeOnly(TypedEvents):
    """The probe without its `event:`-line search: the reference."""

    def _named_content(self, out: bytes) -> bool:
        return False


# Anthropic-shaped blocks, usual and odd (see tests/test_passthrough.py).
_BLOCKS = [
    b'event: message_start\ndata: {"type":"message_start"}\n\n',
    b"event: ping\ndata: {}\n\n",
    b"event: content_block_start\ndata: {}\n\n",
    b'event: content_block_delta\ndata: {"delta":"x"}\n\n',
    b"event: content_block_delta\n\n",  # no data: not dispatched
    b"event: content_block_delta\ndata: {}\nevent: error\n\n",  # the last name counts
    b"event: error\ndata: {}\nevent: content_block_delta\n\n",
    b"event: content_block_delta\r\ndata: {}\r\n\r\n",
    b"data: event: content_block_delta\ndata: {}\n\n",
    b'data: {"type":"content_block_delta"}\n\n',
    b'event: error\ndata: {"error":{"type":"overloaded_error"}}\n\n',
    b": comment\n\n",
    b"\n",
]


@given(
    st.lists(st.sampled_from(_BLOCKS), min_size=1, max_size=12),
    st.lists(st.integers(min_value=0, max_value=12), max_size=4),
    st.lists(st.integers(min_value=0, max_value=600), max_size=2),
)
def test_the_event_line_search_agrees_with_decoding_every_event(
    blocks: list[bytes], between_blocks: list[int], anywhere: list[int]
) -> None:
    raw = b"".join(blocks)
    ends = list(itertools.accumulate(len(block) for block in blocks))
    pieces = split(raw, [ends[i % len(ends)] for i in between_blocks] + anywhere)
    fast, reference = TypedEvents(MESSAGES_PREAMBLE), _DecodeOnly(MESSAGES_PREAMBLE)
    for piece in pieces:
        said = reference(piece)
        assert fast(piece) is said
        if said:  # the relay stops asking at the first content
            break


def test_content_starts_after_the_preamble_of_a_streams_first_write() -> None:
    """What a cut stream is charged counts from its first content event (gateway.engine.stream)."""
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    token = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    assert content_start(role + token + token, ChatContent()) == (len(role), len(token))
    assert content_start(token, ChatContent()) == (0, len(token))
    start = b'event: message_start\ndata: {"type":"message_start"}\n\n'
    delta = b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'
    assert content_start(start + delta, TypedEvents(MESSAGES_PREAMBLE)) == (len(start), len(delta))
    assert content_start(b"RIFF....WAVE", ChatContent()) == (0, 12)  # no events: all counted
