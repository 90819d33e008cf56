"""Every stream passed through in the client's own format (`providers.passthrough`), through
the same checks: relayed byte for byte however the upstream's reads are cut, and a read that
ends on an event boundary goes out as the very bytes read (no copy)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from providers.anthropic_relay import MessagesRelay
from providers.gemini_relay import GeminiRelay
from providers.openai import ResponsesRelay
from providers.passthrough import PassThrough
from tests.chat_answers import run, split
from tests.replay import fixture

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
