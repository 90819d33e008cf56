"""Tests for gateway.sse, the sans-IO SSE codec.

Reader cases run three ways, like h11's `tr()` (h11/tests/test_io.py): whole, one byte at a
time, and followed by trailing partial data that must stay buffered. Property tests check
the decoder against `reference_decode`, a line-by-line transcription of the WHATWG
algorithm, under arbitrary chunking.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wire.sse import Comment, Event, SSEDecoder, SSEProtocolError, encode, encode_data

BOM = b"\xef\xbb\xbf"
Item = Event | Comment


# --- helpers ---------------------------------------------------------------------------


def feed_chunks(decoder: SSEDecoder, chunks: list[bytes]) -> list[Item]:
    items: list[Item] = []
    for chunk in chunks:
        items += decoder.feed(chunk)
    return items


def split_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def tr(stream: bytes, expected: list[Item], last_event_id: str = "") -> None:
    """Decode `stream` whole, byte by byte, and with trailing partial data."""
    # Whole.
    decoder = SSEDecoder()
    assert decoder.feed(stream) == expected
    assert not decoder.pending
    assert decoder.last_event_id == last_event_id

    # Incrementally, one byte at a time.
    decoder = SSEDecoder()
    assert feed_chunks(decoder, [stream[i : i + 1] for i in range(len(stream))]) == expected
    assert not decoder.pending
    assert decoder.last_event_id == last_event_id

    # With trailing data: the unfinished event stays buffered, intact.
    decoder = SSEDecoder()
    assert decoder.feed(stream + b"data: trail") == expected
    assert decoder.pending
    assert decoder.feed(b"ing\n\n") == [Event("trailing")]
    assert not decoder.pending


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def reference_decode(stream: bytes) -> tuple[list[Item], str, bool]:
    """The spec's algorithm, transcribed literally, over the whole stream at once.

    Returns the items, the last event ID string, and whether an unfinished event or line
    is left over. Comments are returned too (the spec drops them; the decoder keeps them).
    """
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):  # "UTF-8 decode" strips one leading BOM
        text = text[1:]
    *lines, leftover = _LINE_BREAK.split(text)
    items: list[Item] = []
    data_buffer = ""
    last_id_buffer = ""
    last_event_id = ""
    event: str | None = None
    id_: str | None = None
    retry: int | None = None
    fields = False
    for line in lines:
        if line == "":
            last_event_id = last_id_buffer
            if data_buffer != "":
                if data_buffer.endswith("\n"):
                    data_buffer = data_buffer[:-1]
                items.append(Event(data_buffer, event, id_, retry))
            data_buffer = ""
            event = id_ = retry = None
            fields = False
            continue
        if line.startswith(":"):
            comment = line[1:]
            items.append(Comment(comment[1:] if comment.startswith(" ") else comment))
            continue
        fields = True
        if ":" in line:
            name, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        if name == "data":
            data_buffer += value + "\n"
        elif name == "event":
            event = value
        elif name == "id":
            if "\0" not in value:
                last_id_buffer = id_ = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return items, last_event_id, fields or leftover != ""


# --- reader cases, each run whole / byte by byte / with trailing data -----------------

READER_CASES: list[tuple[str, bytes, list[Item], str]] = [
    ("single_data_event", b"data: hello\n\n", [Event("hello")], ""),
    ("space_after_colon_is_optional", b"data:hello\n\n", [Event("hello")], ""),
    ("only_one_leading_space_is_stripped", b"data:  two\n\n", [Event(" two")], ""),
    ("trailing_space_is_kept", b"data: x \n\n", [Event("x ")], ""),
    ("colon_in_value_is_kept", b'data: {"a":"b:c"}\n\n', [Event('{"a":"b:c"}')], ""),
    ("multi_line_data_joined_with_lf", b"data: a\ndata: b\ndata: c\n\n", [Event("a\nb\nc")], ""),
    ("empty_data_line_dispatches_empty_event", b"data:\n\n", [Event("")], ""),
    ("data_space_only_dispatches_empty_event", b"data: \n\n", [Event("")], ""),
    ("field_without_colon_has_empty_value", b"data\n\n", [Event("")], ""),
    ("field_without_colon_appends_empty_line", b"data\ndata\ndata: x\n\n", [Event("\n\nx")], ""),
    ("empty_data_lines_kept_between", b"data: a\ndata:\ndata: b\n\n", [Event("a\n\nb")], ""),
    ("nul_in_data_is_kept", b"data: a\x00b\n\n", [Event("a\x00b")], ""),
    (
        "event_id_retry_fields",
        b"event: delta\nid: 7\nretry: 1500\ndata: x\n\n",
        [Event("x", "delta", "7", 1500)],
        "7",
    ),
    ("event_field_empty_value_is_empty_string", b"event:\ndata: x\n\n", [Event("x", "")], ""),
    ("last_event_field_wins", b"event: a\nevent: b\ndata: x\n\n", [Event("x", "b")], ""),
    (
        "event_type_resets_after_dispatch",
        b"event: a\ndata: 1\n\ndata: 2\n\n",
        [Event("1", "a"), Event("2")],
        "",
    ),
    ("retry_non_digit_ignored", b"retry: 1.5\ndata: x\n\n", [Event("x")], ""),
    ("retry_negative_ignored", b"retry: -1\ndata: x\n\n", [Event("x")], ""),
    ("retry_empty_ignored", b"retry:\ndata: x\n\n", [Event("x")], ""),
    ("retry_non_ascii_digits_ignored", "retry: ١٢\ndata: x\n\n".encode(), [Event("x")], ""),
    ("retry_leading_zeros_allowed", b"retry: 007\ndata: x\n\n", [Event("x", retry=7)], ""),
    ("id_with_nul_ignored", b"id: a\x00b\ndata: x\n\n", [Event("x")], ""),
    ("id_with_nul_keeps_earlier_id", b"id: 1\nid: a\x00\ndata: x\n\n", [Event("x", id="1")], "1"),
    ("empty_id_given", b"id\ndata: x\n\n", [Event("x", id="")], ""),
    ("unknown_fields_ignored", b"foo: bar\ndata: x\nbaz\n\n", [Event("x")], ""),
    ("field_names_are_case_sensitive", b"Data: x\nDATA: y\ndata: z\n\n", [Event("z")], ""),
    ("space_before_colon_makes_another_field", b"data : x\ndata: y\n\n", [Event("y")], ""),
    ("comment_returned", b": keep-alive\n", [Comment("keep-alive")], ""),
    ("comment_without_space", b":ping\n", [Comment("ping")], ""),
    ("comment_two_spaces_keeps_one", b":  x\n", [Comment(" x")], ""),
    ("empty_comment", b":\n", [Comment("")], ""),
    ("comment_of_colons", b"::\n", [Comment(":")], ""),
    (
        "comment_inside_event_comes_first",
        b"data: a\n: c\ndata: b\n\n",
        [Comment("c"), Event("a\nb")],
        "",
    ),
    ("blank_lines_alone_dispatch_nothing", b"\n\n\r\n\r\r", [], ""),
    ("event_without_data_not_dispatched", b"event: x\n\ndata: y\n\n", [Event("y")], ""),
    ("retry_without_data_not_dispatched", b"retry: 10\n\n", [], ""),
    ("crlf_line_endings", b"data: a\r\ndata: b\r\n\r\n", [Event("a\nb")], ""),
    ("cr_line_endings", b"data: a\rdata: b\r\r", [Event("a\nb")], ""),
    (
        "mixed_line_endings",
        b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\n\r",
        [Event("a\nb\nc"), Event("d")],
        "",
    ),
    ("lf_cr_is_two_line_breaks", b"data: a\n\rdata: b\n\n", [Event("a"), Event("b")], ""),
    ("cr_cr_lf_is_two_line_breaks", b"data: a\r\r\ndata: b\n\n", [Event("a"), Event("b")], ""),
    ("bom_at_start_is_stripped", BOM + b"data: x\n\n", [Event("x")], ""),
    ("bom_alone_at_start", BOM, [], ""),
    ("second_bom_is_not_stripped", BOM + BOM + b"data: x\n\n", [], ""),
    (
        "bom_later_in_stream_is_not_stripped",
        b"data: a\n\n" + BOM + b"data: b\n\n",
        [Event("a")],
        "",
    ),
    ("bom_inside_data_is_text", b"data: " + BOM + b"\n\n", [Event("\ufeff")], ""),
    ("multibyte_utf8_data", "data: héllo €𝄞 中文\n\n".encode(), [Event("héllo €𝄞 中文")], ""),
    ("invalid_utf8_replaced", b"data: a\xffb\xe2\x82\n\n", [Event("a\ufffdb\ufffd")], ""),
    ("utf8_event_and_id", "event: é\nid: ü\ndata: x\n\n".encode(), [Event("x", "é", "ü")], "ü"),
    ("leading_blank_lines", b"\n\ndata: x\n\n", [Event("x")], ""),
    (
        "several_events_in_one_chunk",
        b"data: 1\n\ndata: 2\n\n: c\n\ndata: 3\n\n",
        [Event("1"), Event("2"), Comment("c"), Event("3")],
        "",
    ),
    (
        "id_persists_as_last_event_id",
        b"id: 1\ndata: a\n\ndata: b\n\n",
        [Event("a", id="1"), Event("b")],
        "1",
    ),
    (
        "empty_id_resets_last_event_id",
        b"id: 1\ndata: a\n\nid\ndata: b\n\n",
        [Event("a", id="1"), Event("b", id="")],
        "",
    ),
    ("id_without_data_still_sets_last_event_id", b"data: a\n\nid: 9\n\n", [Event("a")], "9"),
    (
        "openai_chat_stream",
        b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n',
        [Event('{"choices":[{"delta":{"content":"Hi"}}]}'), Event("[DONE]")],
        "",
    ),
    (
        "anthropic_stream",
        b'event: message_start\ndata: {"type":"message_start"}\n\nevent: ping\ndata: {}\n\n',
        [Event('{"type":"message_start"}', "message_start"), Event("{}", "ping")],
        "",
    ),
]


@pytest.mark.parametrize(
    ("stream", "expected", "last_event_id"),
    [case[1:] for case in READER_CASES],
    ids=[case[0] for case in READER_CASES],
)
def test_reader_case(stream: bytes, expected: list[Item], last_event_id: str) -> None:
    tr(stream, expected, last_event_id)


@pytest.mark.parametrize(
    ("stream", "expected", "last_event_id"),
    [case[1:] for case in READER_CASES],
    ids=[case[0] for case in READER_CASES],
)
def test_reader_case_matches_reference(
    stream: bytes, expected: list[Item], last_event_id: str
) -> None:
    assert reference_decode(stream) == (expected, last_event_id, False)


# --- line breaks across feeds ----------------------------------------------------------


def test_cr_ending_one_feed_and_lf_starting_the_next_is_one_line_break() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # Were the LF a second line break, "a" would be dispatched on its own here.
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r") == [Event("a\nb")]
    assert decoder.feed(b"\n") == []
    assert not decoder.pending


def test_cr_then_empty_feed_then_lf_is_one_line_break() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\ndata: b\n\n") == [Event("a\nb")]


def test_cr_then_non_lf_ends_the_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\r") == [Event("a")]
    assert decoder.feed(b"data: b\r") == []
    assert decoder.feed(b"data: c\n\n") == [Event("b\nc")]


def test_only_one_lf_after_cr_is_swallowed() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\n") == [Event("a")]


# --- BOM -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [
        [BOM[:1], BOM[1:2], BOM[2:] + b"data: x\n\n"],
        [BOM[:2], BOM[2:], b"data: x\n\n"],
        [BOM[:1], b"", BOM[1:], b"data: x\n\n"],
        [BOM, b"data: x\n\n"],
    ],
    ids=["1+1+1", "2+1", "1+empty+2", "3"],
)
def test_bom_split_across_feeds_is_stripped_once(chunks: list[bytes]) -> None:
    decoder = SSEDecoder()
    assert feed_chunks(decoder, chunks) == [Event("x")]
    assert not decoder.pending


def test_partial_bom_is_pending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(BOM[:2]) == []
    assert decoder.pending


def test_bom_prefix_followed_by_other_bytes_is_data() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef") == []
    assert decoder.feed(b"\xbbdata: x\n\n") == []  # the field name is "\ufffddata"
    assert decoder.feed(b"data: y\n\n") == [Event("y")]


def test_bom_in_second_feed_is_not_stripped() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\n") == [Event("a")]
    assert decoder.feed(BOM + b"data: b\n\n") == []


# --- UTF-8 split across feeds ----------------------------------------------------------


@pytest.mark.parametrize("char", ["é", "€", "𝄞"])
def test_multibyte_character_split_across_feeds(char: str) -> None:
    encoded = f"data: {char}{char}\n\n".encode()
    for cut in range(len(encoded)):
        decoder = SSEDecoder()
        assert feed_chunks(decoder, [encoded[:cut], encoded[cut:]]) == [Event(char * 2)]


def test_multibyte_character_split_in_comment_and_event_type() -> None:
    encoded = "event: ü\n: ü\ndata: ü\n\n".encode()
    decoder = SSEDecoder()
    items = feed_chunks(decoder, [encoded[i : i + 1] for i in range(len(encoded))])
    assert items == [Comment("ü"), Event("ü", "ü")]


# --- last_event_id ---------------------------------------------------------------------


def test_last_event_id_persists_across_events() -> None:
    decoder = SSEDecoder()
    assert decoder.last_event_id == ""
    assert decoder.feed(b"id: 1\ndata: a\n\n") == [Event("a", id="1")]
    assert decoder.last_event_id == "1"
    assert decoder.feed(b"data: b\n\n") == [Event("b")]
    assert decoder.last_event_id == "1"
    assert decoder.feed(b"id: 2\ndata: c\n\n") == [Event("c", id="2")]
    assert decoder.last_event_id == "2"


def test_last_event_id_changes_only_at_dispatch() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 1\ndata: a\n") == []
    assert decoder.last_event_id == ""
    assert decoder.feed(b"\n") == [Event("a", id="1")]
    assert decoder.last_event_id == "1"


def test_id_with_nul_does_not_change_last_event_id() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\n")
    assert decoder.last_event_id == "1"


# --- max_event_size --------------------------------------------------------------------


def test_unterminated_line_beyond_max_event_size_raises_502() -> None:
    decoder = SSEDecoder(max_event_size=100)
    decoder.feed(b"data: " + b"x" * 90)
    with pytest.raises(SSEProtocolError, match=r"max_event_size \(100 bytes\)") as info:
        decoder.feed(b"x" * 10)
    assert info.value.status_hint == 502


def test_event_without_blank_line_beyond_max_event_size_raises() -> None:
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(SSEProtocolError, match="100"):
        for _ in range(20):
            decoder.feed(b"data: xxxxxxxx\n")


def test_comments_count_toward_max_event_size() -> None:
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(SSEProtocolError):
        decoder.feed(b": keep-alive\n" * 10)


def test_oversized_event_raises_even_when_fed_whole() -> None:
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(SSEProtocolError):
        decoder.feed(b"data: " + b"x" * 100 + b"\n\n")


@pytest.mark.parametrize("chunk", [b"data: x\n\n", b"data: x\r\n\r\n", b"event: e\ndata: x\n\n"])
def test_event_at_exactly_max_event_size_is_accepted(chunk: bytes) -> None:
    size = len(chunk.replace(b"\r", b"").replace(b"\n", b""))
    decoder = SSEDecoder(max_event_size=size)
    assert len(decoder.feed(chunk * 3)) == 3
    with pytest.raises(SSEProtocolError):
        SSEDecoder(max_event_size=size - 1).feed(chunk)


def test_blank_line_resets_the_event_size() -> None:
    decoder = SSEDecoder(max_event_size=20)
    for _ in range(100):
        assert decoder.feed(b"data: 0123456789\n\n") == [Event("0123456789")]


def test_decoder_stays_broken_after_protocol_error() -> None:
    decoder = SSEDecoder(max_event_size=10)
    with pytest.raises(SSEProtocolError) as first:
        decoder.feed(b"data: 0123456789")
    with pytest.raises(SSEProtocolError) as second:
        decoder.feed(b"\n\n")
    assert second.value is first.value
    with pytest.raises(SSEProtocolError):
        decoder.feed(b"data: fast-path shaped\n\n")


# --- pending ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stream",
    [b"data: a", b"data: a\n", b"data: a\r", b"data: a\r\n", b"event: e\n", b"foo\n", b": c"],
    ids=[
        "mid_line",
        "field_line",
        "field_line_cr",
        "field_line_crlf",
        "event_field",
        "unknown",
        "partial_comment",
    ],
)
def test_pending_when_cut_mid_event(stream: bytes) -> None:
    decoder = SSEDecoder()
    decoder.feed(stream)
    assert decoder.pending


@pytest.mark.parametrize(
    "stream",
    [b"", b"data: a\n\n", b": c\n", b"data: a\r\r", b"event: e\n\n", b"\n"],
    ids=["nothing", "event", "comment", "cr_event", "undispatched_event", "blank"],
)
def test_not_pending_at_event_boundary(stream: bytes) -> None:
    decoder = SSEDecoder()
    decoder.feed(stream)
    assert not decoder.pending


# --- aligned ---------------------------------------------------------------------------


def test_aligned_before_any_feed() -> None:
    assert SSEDecoder().aligned


@pytest.mark.parametrize(
    "chunks",
    [
        [b"data: a\n\n"],
        [b"data: a\n\n", b"data: b\n\n"],
        [b"data: a\n\ndata: b\n\n: c\n"],
        [b"event: e\ndata: a\r\n\r\n"],
        [b": ping\n"],
        [b"data: a\n\n", b""],
        [b"id: 1\n\n"],
        [b"data: a\r\r", b"\ndata: b\n\n"],
        [b"data: a\n", b"\n", b"data: b\n\n"],
    ],
    ids=[
        "one_event",
        "second_event",
        "several_items",
        "crlf_event",
        "comment",
        "empty_feed",
        "undispatched_block",
        "lf_completing_crlf_of_blank_line",
        "after_a_feed_that_finished_an_event",
    ],
)
def test_aligned_when_feed_holds_whole_events(chunks: list[bytes]) -> None:
    decoder = SSEDecoder()
    decoder.feed(b"\n")  # past the BOM check
    for chunk in chunks:
        decoder.feed(chunk)
    assert decoder.aligned


@pytest.mark.parametrize(
    "chunks",
    [
        [b"data: a\n\ndata: b"],
        [b"data: a\n\ndata: b\n"],
        [b"data: a", b"\n\n"],
        [b"data: a\n", b"\n"],
        [b"data: a\n", b"\ndata: b\n\n"],
        [b"data: a\n", b": c\n"],
    ],
    ids=[
        "ends_mid_line",
        "ends_with_fields_pending",
        "begins_mid_line",
        "begins_with_fields_pending",
        "begins_mid_event_ends_on_boundary",
        "comment_inside_event",
    ],
)
def test_not_aligned_when_feed_cuts_an_event(chunks: list[bytes]) -> None:
    decoder = SSEDecoder()
    decoder.feed(b"\n")
    for chunk in chunks:
        decoder.feed(chunk)
    assert not decoder.aligned


def test_not_aligned_when_bom_was_stripped() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(BOM + b"data: a\n\n") == [Event("a")]
    assert not decoder.aligned
    assert decoder.feed(b"data: b\n\n") == [Event("b")]
    assert decoder.aligned


def test_not_aligned_while_bom_is_undecided() -> None:
    decoder = SSEDecoder()
    decoder.feed(BOM[:1])
    assert not decoder.aligned
    decoder.feed(BOM[1:] + b"data: a\n\n")
    assert not decoder.aligned


def test_aligned_stream_start_without_bom() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\n") == [Event("a")]
    assert decoder.aligned


def test_repr_shows_state() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 3\ndata: a\n\ndata: b")
    assert repr(decoder) == "<SSEDecoder pending=True aligned=False last_event_id='3'>"


# --- encode ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "wire"),
    [
        (Event("x"), b"data: x\n\n"),
        (Event(""), b"data: \n\n"),
        (Event("a\nb"), b"data: a\ndata: b\n\n"),
        (Event("a\r\nb\rc\n"), b"data: a\ndata: b\ndata: c\ndata: \n\n"),
        (Event("x", "delta", "7", 1500), b"event: delta\nid: 7\nretry: 1500\ndata: x\n\n"),
        (Event("x", event=""), b"event: \ndata: x\n\n"),
        (Event("x", id=""), b"id: \ndata: x\n\n"),
        (Event("\u2028\x0b\x85"), "data: \u2028\x0b\x85\n\n".encode()),
        (Comment("ping"), b": ping\n\n"),
        (Comment(""), b": \n\n"),
        (Comment("a\nb"), b": a\n: b\n\n"),
    ],
)
def test_encode_wire_format(item: Item, wire: bytes) -> None:
    assert encode(item) == wire


@pytest.mark.parametrize(
    "item",
    [
        Event("x", event="a\nb"),
        Event("x", event="a\rb"),
        Event("x", id="a\nb"),
        Event("x", id="a\rb"),
        Event("x", id="a\x00b"),
        Event("x", retry=-1),
        Event("x", retry=True),
        Event("x", retry="5"),  # type: ignore[arg-type]
    ],
    ids=[
        "event_lf",
        "event_cr",
        "id_lf",
        "id_cr",
        "id_nul",
        "retry_negative",
        "retry_bool",
        "retry_str",
    ],
)
def test_encode_rejects_fields_the_decoder_would_misread(item: Event) -> None:
    with pytest.raises(ValueError):
        encode(item)


def test_encode_rejects_lone_surrogates() -> None:
    with pytest.raises(ValueError):
        encode(Event("\ud800"))


def test_encoded_empty_data_decodes_as_empty_event() -> None:
    assert SSEDecoder().feed(encode(Event(""))) == [Event("")]


def test_encoded_comment_decodes_as_comments() -> None:
    assert SSEDecoder().feed(encode(Comment("a\r\nb"))) == [Comment("a"), Comment("b")]


def test_encode_data_frames_one_event() -> None:
    payload = b'{"choices":[{"delta":{"content":"hi"}}]}'
    assert encode_data(payload) == b"data: " + payload + b"\n\n"
    assert SSEDecoder().feed(encode_data(payload)) == [Event(payload.decode())]


# --- properties ------------------------------------------------------------------------

# Lone surrogates are not text a stream can carry (encode raises UnicodeEncodeError).
_chars_without_breaks = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")
_line_ends = st.sampled_from([b"\n", b"\r", b"\r\n"])
_LOOKALIKES = [b"Data", b"data ", BOM + b"data"]  # look like "data", are unknown fields
_names = st.sampled_from(
    [
        b"data",
        b"data",
        b"data",
        b"event",
        b"id",
        b"id",
        b"retry",
        b"retry",
        b"foo",
        b"",
        *_LOOKALIKES,
    ]
)
_values = st.one_of(
    st.text(_chars_without_breaks, max_size=12).map(str.encode),
    st.sampled_from([b"", b" ", b"42", b"007", b"1x", b"\xd9\xa1", b"a\x00b", b"\x00"]),
    st.sampled_from([b"\xff\xfe", b"\xe2\x82", "€𝄞".encode(), BOM]),
)
_field_lines = st.builds(
    lambda name, sep, value, end: name + sep + value + end,
    _names,
    st.sampled_from([b":", b": ", b":  ", b""]),
    _values,
    _line_ends,
)
_comment_lines = st.builds(lambda value, end: b":" + value + end, _values, _line_ends)
# A block: field lines, then the blank line that dispatches them.
_blocks = st.builds(
    lambda lines, end: b"".join(lines) + end,
    st.lists(st.one_of(_field_lines, _comment_lines), max_size=5),
    _line_ends,
)
_pieces = st.one_of(
    _blocks,
    _blocks,
    _field_lines,
    _comment_lines,
    _line_ends,
    st.binary(max_size=6),
)
sse_streams = st.builds(
    lambda start, pieces: start + b"".join(pieces),
    st.sampled_from([b"", b"", BOM, BOM[:2]]),
    st.lists(_pieces, max_size=12),
)
any_streams = st.one_of(sse_streams, st.binary(max_size=200))


@settings(max_examples=300, deadline=None)
@given(stream=any_streams, data=st.data())
@example(stream=b"data: a\r\n\r\n", data=None)
def test_any_chunking_decodes_like_the_reference(stream: bytes, data: st.DataObject) -> None:
    """Whole or split anywhere, the decoder agrees with the spec transcription."""
    expected = reference_decode(stream)
    whole = SSEDecoder()
    assert (whole.feed(stream), whole.last_event_id, whole.pending) == expected

    cuts = (
        list(range(1, len(stream)))
        if data is None
        else data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    )
    split = SSEDecoder()
    items = feed_chunks(split, split_at(stream, cuts))
    assert (items, split.last_event_id, split.pending) == expected


@settings(max_examples=200, deadline=None)
@given(stream=any_streams, data=st.data(), limit=st.integers(1, 40))
def test_max_event_size_is_enforced_whatever_the_chunking(
    stream: bytes, data: st.DataObject, limit: int
) -> None:
    """Raising depends on the stream alone; until it raises, the items are the same."""
    unlimited = SSEDecoder().feed(stream)

    def run(chunks: list[bytes]) -> tuple[list[Item], bool]:
        decoder = SSEDecoder(max_event_size=limit)
        items: list[Item] = []
        try:
            for chunk in chunks:
                items += decoder.feed(chunk)
        except SSEProtocolError as exc:
            assert exc.status_hint == 502
            return items, True
        return items, False

    whole_items, whole_raised = run([stream])
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    split_items, split_raised = run(split_at(stream, cuts))
    assert split_raised == whole_raised
    if not whole_raised:
        assert whole_items == split_items == unlimited
    else:
        assert unlimited[: len(split_items)] == split_items


_texts_without_breaks = st.text(_chars_without_breaks, max_size=20)
events = st.builds(
    Event,
    data=st.text(max_size=40),
    event=st.none() | _texts_without_breaks,
    id=st.none()
    | st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=20
    ),
    retry=st.none() | st.integers(0, 2**63),
)
comments = st.builds(Comment, _texts_without_breaks)


def normalised(item: Item) -> Item:
    if isinstance(item, Event) and "\r" in item.data:
        data = item.data.replace("\r\n", "\n").replace("\r", "\n")
        return Event(data, item.event, item.id, item.retry)
    return item


@settings(max_examples=300, deadline=None)
@given(item=st.one_of(events, comments))
def test_decode_of_encode_roundtrips(item: Item) -> None:
    assert SSEDecoder().feed(encode(item)) == [normalised(item)]


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.one_of(events, comments), max_size=8), data=st.data())
def test_concatenated_encodings_roundtrip_through_any_chunking(
    items: list[Item], data: st.DataObject
) -> None:
    stream = b"".join(encode(item) for item in items)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    decoder = SSEDecoder()
    assert feed_chunks(decoder, split_at(stream, cuts)) == [normalised(i) for i in items]
    assert not decoder.pending


@settings(max_examples=150, deadline=None)
@given(items=st.lists(st.one_of(events, comments), min_size=1, max_size=4))
def test_whole_encodings_are_aligned(items: list[Item]) -> None:
    """An encoded item fed on its own may be relayed verbatim."""
    decoder = SSEDecoder()
    decoder.feed(b"\n")
    for item in items:
        decoder.feed(encode(item))
        assert decoder.aligned


@settings(max_examples=150, deadline=None)
@given(payload=st.text(_chars_without_breaks, max_size=60))
def test_encode_data_roundtrips(payload: str) -> None:
    assert SSEDecoder().feed(encode_data(payload.encode())) == [Event(payload)]


_data_chunks = st.builds(
    lambda sep, value: b"data" + sep + value + b"\n\n",
    st.sampled_from([b":", b": ", b":  ", b""]),
    st.one_of(_values, st.binary(max_size=8), st.sampled_from([b"a\rb", b"a\r\nb", b"\r"])),
)


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.one_of(_data_chunks, _data_chunks, _pieces), max_size=10))
def test_fast_path_agrees_with_the_reference(chunks: list[bytes]) -> None:
    """Whole `data:` chunks fed at event boundaries (the fast path) decode as the spec says."""
    decoder = SSEDecoder()
    decoder.feed(b"\n")  # past the BOM check, so later feeds may take the fast path
    items = feed_chunks(decoder, chunks)
    assert (items, decoder.last_event_id, decoder.pending) == reference_decode(
        b"\n" + b"".join(chunks)
    )


@settings(max_examples=150, deadline=None)
@given(stream=sse_streams, data=st.data())
def test_aligned_feeds_decode_alone_to_the_same_items(stream: bytes, data: st.DataObject) -> None:
    """What `aligned` promises a relay: those bytes, forwarded verbatim, mean the same."""
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    decoder = SSEDecoder()
    for chunk in split_at(stream, cuts):
        items = decoder.feed(chunk)
        if decoder.aligned:
            alone = SSEDecoder()
            alone.feed(b"\n")  # mid-stream, as the relay's client is: no BOM check
            assert alone.feed(chunk) == items
            assert not alone.pending
