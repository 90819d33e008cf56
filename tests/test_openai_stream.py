"""The OpenAI-compatible stream normaliser, bytes in and bytes out, with no sockets."""

from __future__ import annotations

import itertools
import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.chat.normaliser import ChunkNormaliser
from tests.streams import (
    DONE,
    USAGE,
    chat_chunk,
    data,
    inline_finish_stream,
    openai_chat_stream,
    parse_sse,
)
from wire.operations import Operation
from wire.usage import Usage

TOKENS = ["Hé", "llo", " 世界", " 🎉", "!"]


def _run(pieces: list[bytes]) -> bytes:
    normaliser = ChunkNormaliser(Operation.CHAT, "test")
    out = b"".join(normaliser.feed(piece) for piece in pieces)
    return out + normaliser.end()


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    return [stream[a:b] for a, b in itertools.pairwise(points)]


def test_content_chunks_pass_as_the_upstream_bytes_unchanged() -> None:
    normaliser = ChunkNormaliser(Operation.CHAT, "test")
    for event in openai_chat_stream(TOKENS)[:-3]:
        assert normaliser.feed(event) is event  # no copy, no re-encoding


def test_several_content_events_in_one_read_pass_unchanged() -> None:
    normaliser = ChunkNormaliser(Operation.CHAT, "test")
    read = b"".join(openai_chat_stream(TOKENS)[:-3])
    assert normaliser.feed(read) is read


@settings(max_examples=300, deadline=None)
@given(
    style=st.sampled_from([openai_chat_stream, inline_finish_stream]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_any_split_of_the_upstream_stream_gives_the_same_events(style, cuts) -> None:
    stream = b"".join(style(TOKENS))
    whole = parse_sse(_run([stream]))
    assert parse_sse(_run(_split(stream, cuts))) == whole
    chunks = [orjson.loads(event.data) for event in whole[:-1]]
    assert whole[-1].data == "[DONE]"
    assert chunks[-1]["usage"] == USAGE and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "".join(TOKENS)


def test_crlf_upstream_is_normalised_too() -> None:
    stream = b"".join(openai_chat_stream(TOKENS)).replace(b"\n", b"\r\n")
    events = parse_sse(_run([stream]))
    assert events[-1].data == "[DONE]"
    assert orjson.loads(events[-2].data)["usage"] == USAGE


def test_upstream_comments_are_relayed() -> None:
    out = _run([b": OPENROUTER PROCESSING\n\n", *openai_chat_stream(["a"])])
    assert out.startswith(b": OPENROUTER PROCESSING")


def test_stream_without_done_but_finished_still_ends_properly() -> None:
    events = parse_sse(_run(openai_chat_stream(TOKENS)[:-1]))
    assert events[-1].data == "[DONE]"
    assert orjson.loads(events[-2].data)["usage"] == USAGE


def test_stream_cut_mid_event_ends_with_an_error_event() -> None:
    pieces = [data(chat_chunk({"content": "a"})), b'data: {"choi']
    events = parse_sse(_run(pieces))
    assert orjson.loads(events[-1].data)["error"]["code"] == "upstream_protocol_error"


def test_nothing_after_the_terminal_event_is_sent() -> None:
    normaliser = ChunkNormaliser(Operation.CHAT, "test")
    out = normaliser.feed(DONE + data(chat_chunk({"content": "late"})))
    assert normaliser.finished
    assert b"late" not in out


def test_text_completion_finish_is_split_from_its_text() -> None:
    chunk = {
        "id": "c",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "text": "end", "logprobs": None, "finish_reason": "stop"}],
        "usage": USAGE,
    }
    normaliser = ChunkNormaliser(Operation.COMPLETIONS, "test")
    events = parse_sse(normaliser.feed(data(chunk) + DONE))
    first, last, done = (orjson.loads(e.data) if e.data != "[DONE]" else None for e in events)
    assert first["choices"][0] == {
        "index": 0,
        "text": "end",
        "logprobs": None,
        "finish_reason": None,
    }
    assert first["usage"] is None
    assert last["choices"][0]["text"] == "" and last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"] == USAGE
    assert done is None


def test_content_before_the_finish_in_the_same_read_passes_verbatim() -> None:
    events = openai_chat_stream(TOKENS)
    whole = b"".join(events)
    out = _run([whole])
    content = b"".join(events[:-3])  # role and content chunks, as the upstream wrote them
    assert out.startswith(content)
    assert parse_sse(out)[-1].data == "[DONE]"


@settings(max_examples=200, deadline=None)
@given(
    extras=st.lists(
        st.sampled_from([b": keep-alive\n\n", b"event: ping\ndata: {}\n\n", b"\n", b"id: 7\n\n"]),
        max_size=4,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
    crlf_from=st.integers(min_value=0, max_value=12),
)
def test_comments_named_events_and_a_switch_to_crlf_survive_any_split(
    extras, cuts, crlf_from
) -> None:
    events = openai_chat_stream(TOKENS)
    blocks = events[:2] + extras + events[2:]
    # Some servers' line endings change mid-stream: CRLF from block `crlf_from` on.
    blocks = [b.replace(b"\n", b"\r\n") if i >= crlf_from else b for i, b in enumerate(blocks)]
    stream = b"".join(blocks)
    whole = parse_sse(_run([stream]))
    assert parse_sse(_run(_split(stream, cuts))) == whole
    text = "".join(
        orjson.loads(e.data)["choices"][0]["delta"].get("content") or ""
        for e in whole
        if e.data.startswith('{"id"')
    )
    assert text == "".join(TOKENS)
    assert whole[-1].data == "[DONE]"


def test_usage_chunk_with_null_choices_is_merged_not_an_error() -> None:
    stream = openai_chat_stream(TOKENS)
    usage_only = data({**chat_chunk(choices=[], usage=USAGE), "choices": None})
    events = parse_sse(_run([*stream[:-2], usage_only, DONE]))
    assert events[-1].data == "[DONE]"
    last = orjson.loads(events[-2].data)
    assert last["usage"] == USAGE and last["choices"][0]["finish_reason"] == "stop"


def test_valid_json_of_an_unusual_shape_passes_as_it_is() -> None:
    odd = b'data: {"choices": "not a list"}\n\n'
    out = _run([odd, *openai_chat_stream(["a"])])
    assert out.startswith(odd)
    assert parse_sse(out)[-1].data == "[DONE]"


def test_one_large_event_in_small_reads_is_held_in_pieces() -> None:
    big = data(chat_chunk({"content": "x" * 300_000}))
    pieces = [big[i : i + 1024] for i in range(0, len(big), 1024)]
    assert _run([*pieces, *openai_chat_stream(["a"])]).startswith(big)


# --- the plain-chunk fast path: two regex scans instead of decoding each event ---

_deltas = st.fixed_dictionaries(
    {}, optional={"content": st.sampled_from(["", "a", '{"city": "Paris"}', '": x'])}
)
_chunk_values = st.fixed_dictionaries(
    {
        "choices": st.lists(
            st.fixed_dictionaries(
                {"index": st.just(0), "delta": _deltas},
                optional={"finish_reason": st.sampled_from([None, None, "stop", "length"])},
            ),
            max_size=2,
        )
    },
    optional={
        "usage": st.sampled_from([None, USAGE]),
        "error": st.just({"message": "boom"}),
        "note": st.sampled_from(['"finish_reason":"stop"', "usage", "{{", "error", "[[["]),
    },
)


def _plain_by_parsing(chunk: dict[str, object]) -> bool:
    """The reference: what a full decode of the chunk says."""
    choices = chunk.get("choices") or []
    assert isinstance(choices, list)
    return (
        chunk.get("usage") is None
        and "error" not in chunk
        and all(choice.get("finish_reason") is None for choice in choices)
    )


# How serialisers space a chunk: compact, `"key": value`, and `"key" : value`.
_SPACINGS = [(",", ":"), (", ", ": "), (" , ", " : ")]


@settings(max_examples=300, deadline=None)
@given(st.lists(_chunk_values, min_size=1, max_size=6), st.sampled_from(_SPACINGS))
def test_the_plain_prefix_is_what_decoding_each_event_would_say(
    chunks: list[dict[str, object]], spacing: tuple[str, str]
) -> None:
    from formats.chat.normaliser import _plain_prefix

    blocks = [b"data: " + json.dumps(c, separators=spacing).encode() + b"\n\n" for c in chunks]
    expected = 0
    for block, chunk in zip(blocks, chunks, strict=True):
        if not _plain_by_parsing(chunk):
            break
        expected += len(block)
    assert _plain_prefix(b"".join(blocks)) == expected


def test_an_event_that_is_no_json_object_still_ends_the_stream() -> None:
    for garbage in (b"data: [1, 2]\n\n", b'data: "text"\n\n', b"data: {cut\n\n"):
        out = _run([data(chat_chunk({"content": "a"})) + garbage + DONE])  # one read
        events = parse_sse(out)
        assert orjson.loads(events[0].data)["choices"][0]["delta"]["content"] == "a"
        assert orjson.loads(events[-1].data)["error"]["code"] == "upstream_protocol_error"


def test_the_usage_is_readable_as_soon_as_its_chunk_is_seen() -> None:
    """A stream cut after its usage chunk but before [DONE] is charged the upstream's usage."""
    normaliser = ChunkNormaliser(Operation.CHAT, "openai")
    normaliser.feed(data(chat_chunk({"content": "Hi"})) + data(chat_chunk({}, "stop")))
    assert normaliser.usage is None
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    normaliser.feed(data(chat_chunk(choices=[], usage=usage)))
    assert not normaliser.finished  # held back for the last chunk, yet already read
    assert normaliser.usage == Usage(9, 2)
