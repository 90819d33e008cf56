"""The offline token estimate: its rules, and its scale against known counts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wire.tokens import PER_MESSAGE, estimate_json, estimate_streamed, estimate_text


def test_words_and_punctuation_count_like_a_bpe_pre_tokenizer() -> None:
    # o200k: "Hello", ",", " world", "!" -> 4
    assert estimate_text("Hello, world!") == 4
    # A long word splits; digits go in threes; indentation is one token, a space none.
    assert estimate_text("internationalization") == 3
    assert estimate_text("1234567") == 3
    assert estimate_text("    return x") == 3
    assert estimate_text("") == 0


def test_every_non_ascii_character_is_one_token() -> None:
    assert estimate_text("日本語") == 3
    assert estimate_text("café") == 2  # "caf" and "é"


def test_english_prose_is_about_four_characters_a_token() -> None:
    prose = (
        "The gateway relays each upstream chunk to the client as it arrives, and it never "
        "buffers a whole stream. When a provider fails before the first token, the request "
        "moves to the next candidate without the client seeing anything of it. "
    ) * 20
    ratio = len(prose) / estimate_text(prose)
    assert 3.5 < ratio < 5.5, ratio


def test_json_counts_keys_strings_and_structure() -> None:
    schema = {"type": "object", "properties": {"command": {"type": "string"}}}
    assert estimate_json(schema) > estimate_text("type object properties command type string")
    assert estimate_json(["a", "b"]) == 1 + 2 * (1 + 1)
    assert PER_MESSAGE == 3


@given(st.text(), st.text())
def test_the_estimate_of_joined_texts_is_near_the_sum_of_their_estimates(a: str, b: str) -> None:
    # A join can merge one piece across the seam (two letter runs, or two space runs) and
    # nothing else.
    assert abs(estimate_text(a + b) - (estimate_text(a) + estimate_text(b))) <= 2


def test_a_cut_stream_counts_a_token_per_event_it_relayed() -> None:
    assert estimate_streamed(0, 120) == 0  # nothing relayed: nothing estimated
    assert estimate_streamed(3 * 120, 120) == 3
    assert estimate_streamed(3 * 120 + 10, 120) == 3  # events a few bytes apart in size
    assert estimate_streamed(40, 120) == 1  # part of one event: still a token
