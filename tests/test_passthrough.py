"""Every stream passed through in the client's own format (`providers.passthrough`), through
the same checks: relayed byte for byte however the upstream's reads are cut, and a read that
ends on an event boundary goes out as the very bytes read (no copy)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from providers.anthropic import MessagesRelay
from providers.gemini import GeminiRelay
from providers.openai import ResponsesRelay
from providers.passthrough import PassThrough
from tests.chat_answers import run, split
from tests.replay import fixture
from wire.sse import Event, SSEDecoder

# Each relay, and the captured streams it passes through.
RELAYS: dict[str, tuple[Callable[[], PassThrough], list[str]]] = {
    "messages": (
        lambda: MessagesRelay("claude"),
        [
            f"anthropic/{name}.sse"
            for name in ("text_stream", "tool_use_stream", "thinking_stream", "cached_stream")
        ],
    ),
    "gemini": (
        lambda: GeminiRelay("gemini"),
        [
            f"gemini/{name}.sse"
            for name in ("text_stream", "tool_stream", "thinking_stream", "blocked_stream")
        ],
    ),
    "responses": (
        lambda: ResponsesRelay("openai"),
        ["openai/responses_text.sse", "openai/responses_function_call.sse"],
    ),
}
STREAMS = [(relay, stream) for relay, (_, streams) in RELAYS.items() for stream in streams]


@settings(max_examples=150, deadline=None)
@given(
    which=st.sampled_from(STREAMS),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=40),
)
# Reads that end between the CR and the LF of a Gemini event's last CRLF, after a read that
# went out verbatim and after one that was re-framed.
@example(which=("gemini", "gemini/tool_stream.sse"), cuts=[1, 339])
@example(which=("gemini", "gemini/text_stream.sse"), cuts=[301, 384, 674])
def test_the_stream_is_relayed_byte_for_byte_at_any_split(
    which: tuple[str, str], cuts: list[int]
) -> None:
    relay_name, stream = which
    raw = fixture(stream)
    relay = RELAYS[relay_name][0]()
    assert run(relay, split(raw, cuts)) == raw
    assert relay.finished and relay.failure is None


@pytest.mark.parametrize("which", STREAMS, ids=[stream for _, stream in STREAMS])
def test_a_read_on_event_boundaries_goes_out_as_the_same_bytes(which: tuple[str, str]) -> None:
    relay_name, stream = which
    raw = fixture(stream)
    relay = RELAYS[relay_name][0]()
    assert relay.feed(raw) is raw  # zero copy


class _DecodedEveryEvent(MessagesRelay):
    """The Messages relay without its skip of content deltas: the reference."""

    unwatched = None


# Blocks an Anthropic-speaking upstream might send, usual and odd: deltas the relay skips,
# deltas spelled so that it must not (several data lines, an id, CRLF, no space), the events
# it reads, comments, blank lines, an error, and text that looks like an event inside data.
_DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0}\n\n'
_BLOCKS = [
    _DELTA,
    _DELTA,
    b'event: content_block_delta\ndata: {"delta":"a\\n\\nevent: message_stop"}\n\n',
    b"event: content_block_delta\ndata: \n\n",
    b"event: content_block_delta\ndata: one\ndata: two\n\n",
    b"event: content_block_delta\ndata: x\nid: 7\n\n",
    b"event: content_block_delta\ndata: {}\nevent: message_stop\n\n",  # the last type counts
    b"event: content_block_delta\r\ndata: {}\r\n\r\n",
    b"event:content_block_delta\ndata:{}\n\n",
    b"data: event: content_block_delta\ndata: {}\n\n",
    b'event: message_start\ndata: {"message":{"usage":{"input_tokens":5,"output_tokens":1}}}\n\n',
    b'event: message_delta\ndata: {"usage":{"output_tokens":9}}\n\n',
    b'data: {"type":"message_delta","usage":{"output_tokens":4}}\n\n',
    b"event: ping\ndata: {}\n\n",
    b": a comment\n\n",
    b"\n",
    b'event: error\ndata: {"error":{"type":"overloaded_error","message":"busy"}}\n\n',
    b"event: message_stop\ndata: {}\n\n",
]


_WATCHED = (b"event: message_start", b"event: message_delta", b"event: message_stop")


def _events(data: bytes) -> list[tuple[str | None, str, str | None]]:
    items = SSEDecoder().feed(data + b"\n\n")
    return [(i.event, i.data, i.id) for i in items if isinstance(i, Event)]


@settings(max_examples=300, deadline=None)
@given(
    blocks=st.lists(st.sampled_from(_BLOCKS), min_size=1, max_size=30),
    between_blocks=st.lists(st.integers(min_value=0, max_value=30), max_size=8),
    anywhere=st.lists(st.integers(min_value=0, max_value=3000), max_size=3),
)
def test_skipping_content_deltas_changes_nothing_the_client_or_the_gateway_sees(
    blocks: list[bytes], between_blocks: list[int], anywhere: list[int]
) -> None:
    raw = b"".join(blocks)
    # Most reads end on a block's end (where the skip applies), some anywhere.
    ends = list(itertools.accumulate(len(block) for block in blocks))
    pieces = split(raw, [ends[i % len(ends)] for i in between_blocks] + anywhere)
    fast, reference = MessagesRelay("claude"), _DecodedEveryEvent("claude")
    fast_out, reference_out = run(fast, pieces), run(reference, pieces)
    assert _events(fast_out) == _events(reference_out)
    assert fast.finished == reference.finished
    assert repr(fast.failure) == repr(reference.failure)
    assert fast.usage == reference.usage


def test_a_burst_of_deltas_between_two_watched_events_is_skipped_and_sent_as_read() -> None:
    start, delta, stop = (next(b for b in _BLOCKS if b.startswith(p)) for p in _WATCHED)
    raw = start + _DELTA * 50 + delta + stop + _DELTA
    relay = MessagesRelay("claude")
    relay.feed(b": warm up the decoder\n\n")
    out = relay.feed(raw)
    assert out == raw[: -len(_DELTA)]  # up to message_stop, the bytes as read
    assert relay.finished and relay.usage is not None
    assert relay.usage.output == 9
