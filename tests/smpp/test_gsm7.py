"""The GSM 03.38 tables (smppgw.smpp.text.gsm7), checked through encoding and decoding."""

from __future__ import annotations

from smppgw.smpp.text import (
    GSM_BASIC,
    GSM_EXTENSION,
    decode_text,
    split,
)


def test_gsm_basic_table_round_trips_byte_for_byte() -> None:
    chars = GSM_BASIC.replace("\x1b", "")
    encoded = split(chars, max_parts=1)[0].short_message
    assert encoded == bytes(i for i in range(128) if i != 0x1B)
    assert decode_text(encoded, 0) == chars


def test_gsm_basic_table_matches_3gpp_23038_spot_checks() -> None:
    expected = {
        0x00: "@",
        0x01: "£",
        0x02: "$",
        0x09: "Ç",
        0x10: "Δ",
        0x11: "_",
        0x1C: "Æ",
        0x1F: "É",
        0x24: "¤",
        0x40: "¡",
        0x5B: "Ä",
        0x5F: "§",
        0x60: "¿",
        0x7B: "ä",
        0x7F: "à",
    }
    for code, ch in expected.items():
        assert GSM_BASIC[code] == ch
        assert split(ch)[0].short_message == bytes([code])


def test_gsm_extension_table_round_trips() -> None:
    assert GSM_EXTENSION == {
        0x0A: "\f",
        0x14: "^",
        0x28: "{",
        0x29: "}",
        0x2F: "\\",
        0x3C: "[",
        0x3D: "~",
        0x3E: "]",
        0x40: "|",
        0x65: "€",
    }
    for code, ch in GSM_EXTENSION.items():
        (part,) = split("x" + ch)
        assert part.data_coding == 0
        assert part.short_message == b"x\x1b" + bytes([code])
        assert decode_text(part.short_message, 0) == "x" + ch
