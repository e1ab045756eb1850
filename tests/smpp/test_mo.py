"""Inbound text (smppgw.smpp.text.mo and .coding): every data_coding, UDH and SAR concat info."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from smppgw.smpp.constants import ESM_UDHI, Tag
from smppgw.smpp.text import (
    MoPart,
    decode_mo,
    decode_text,
)


def test_decode_text_codings() -> None:
    assert decode_text(b"hello", 1) == "hello"
    assert decode_text("café".encode("latin-1"), 3) == "café"
    assert decode_text("😀 ж".encode("utf-16-be"), 8) == "😀 ж"
    assert decode_text(b"\xd8\x3d", 8) == "\ufffd"  # lone high surrogate
    assert decode_text(b"\x00a\x00", 8) == "a\u0000"  # odd length keeps the stray octet
    assert decode_text(b"\x00\xff\x10", 4) == "\x00\xff\x10"  # binary: octets as Latin-1
    assert decode_text(b"\x00\x02\x11", 0) == "@$_"
    assert decode_text(b"ab\x1b", 0) == "ab"  # trailing ESC
    assert decode_text(b"\x1b\x1ba", 0) == " a"  # ESC ESC
    assert decode_text(b"\x1bA", 0) == "A"  # unknown escape shows the basic character
    assert decode_text(b"\x1b\x65\x1b\x0a", 0) == "€\f"
    assert decode_text(b"a\xe9", 0) == "aé"  # not unpacked GSM: Latin-1
    assert decode_text("hi".encode("utf-16-be"), 0x18) == "hi"  # general group, UCS2
    assert decode_text(b"hi", 0xF0) == "hi"  # class 0, GSM
    assert decode_text("Привет".encode("iso8859_5"), 6) == "Привет"


@given(data=st.binary(max_size=300), dc=st.integers(0, 255), esm=st.integers(0, 255))
@settings(max_examples=300, deadline=None)
def test_decode_mo_never_raises(data: bytes, dc: int, esm: int) -> None:
    mo = decode_mo(data, dc, esm, [])
    assert isinstance(mo.text, str)
    if mo.concat is None:
        mo.text.encode("utf-8")  # clean: no lone surrogates


def test_decode_mo_strips_udh8_and_reads_concat() -> None:
    mo = decode_mo(b"\x05\x00\x03\x2a\x02\x01hello", 0, ESM_UDHI, [])
    assert mo == MoPart("hello", (0x2A, 2, 1))


def test_decode_mo_udh16_after_another_ie() -> None:
    udh = b"\x0c" + b"\x05\x04\x0b\x84\x23\xf0" + b"\x08\x04\x12\x34\x03\x02"
    mo = decode_mo(udh + "ж".encode("utf-16-be"), 8, ESM_UDHI | 0x04, [])
    assert mo == MoPart("ж", (0x1234, 3, 2))


def test_decode_mo_udh_without_concat_ie_is_a_plain_message() -> None:
    mo = decode_mo(b"\x06\x05\x04\x0b\x84\x23\xf0hi", 0, ESM_UDHI, [])
    assert mo == MoPart("hi", None)


def test_decode_mo_sar_tlvs_and_payload() -> None:
    tlvs = [
        (Tag.SAR_MSG_REF_NUM, b"\x00\x07"),
        (Tag.SAR_TOTAL_SEGMENTS, b"\x02"),
        (Tag.SAR_SEGMENT_SEQNUM, b"\x02"),
    ]
    assert decode_mo(b"tail", 0, 0, tlvs) == MoPart("tail", (7, 2, 2))
    payload = [(Tag.MESSAGE_PAYLOAD, "long ж".encode("utf-16-be"))]
    assert decode_mo(b"", 8, 0, payload) == MoPart("long ж", None)


def test_decode_mo_drops_nonsense_concat() -> None:
    assert decode_mo(b"\x05\x00\x03\x01\x02\x00x", 0, ESM_UDHI, []).concat is None  # seq 0
    assert decode_mo(b"\x05\x00\x03\x01\x01\x01x", 0, ESM_UDHI, []).concat is None  # total 1
    assert decode_mo(b"\x05\x00\x03\x01\x02\x03x", 0, ESM_UDHI, []).concat is None  # seq > total
    # a UDH length past the end: no UDH stripped, the octets decoded as they are
    assert decode_mo(b"\x09ab", 0, ESM_UDHI, []) == MoPart("Çab", None)
