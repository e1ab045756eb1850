"""UCS2 as handsets use it (smppgw.smpp.text.ucs2): split surrogate pairs, odd lengths."""

from __future__ import annotations

from smppgw.smpp.text.graphemes import is_boundary
from smppgw.smpp.text.ucs2 import char_offsets, clean, decode_ucs2, encode_ucs2

EMOJI = "😀"  # U+1F600: a surrogate pair in UTF-16


def test_char_offsets_count_a_pair_as_four_octets() -> None:
    text = "aж" + EMOJI + "b"
    assert char_offsets(text, encode_ucs2(text)) == [0, 2, 4, 8, 10]
    assert char_offsets("ab", encode_ucs2("ab")) == [0, 2, 4]  # all BMP: the quick path


def test_halves_of_a_pair_decode_apart_and_clean_rejoins_them() -> None:
    data = encode_ucs2(EMOJI)
    first, second = decode_ucs2(data[:2]), decode_ucs2(data[2:])
    assert first == "\ud83d" and second == "\ude00"  # kept, not replaced
    assert clean(first + second) == EMOJI
    assert clean(first + "x") == "\ufffdx"  # a half that never met its pair


def test_an_odd_length_keeps_the_stray_octet() -> None:
    assert decode_ucs2(b"\x00a\x00") == "a\x00"


def test_no_boundary_inside_a_pair_of_flags_or_before_a_combining_mark() -> None:
    flags = "🇩🇪🇫🇷"
    assert [i for i in range(1, len(flags)) if is_boundary(flags, i)] == [2]
    assert not is_boundary("e\u0301", 1)
    assert not is_boundary("\r\n", 1)
    assert is_boundary("ab", 1)
