"""Text encoding, segmentation and MO decoding (smppgw.smpp.text)."""

from __future__ import annotations

import time
import unicodedata
from itertools import accumulate

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smppgw.smpp.constants import ESM_UDHI, Tag
from smppgw.smpp.text import (
    GSM_BASIC,
    GSM_EXTENSION,
    MISSING_PART,
    Concat,
    MoPart,
    MoRefused,
    Part,
    Reassembler,
    RefCounter,
    TextError,
    decode_mo,
    decode_text,
    split,
)

NFD = unicodedata.normalize("NFD", "Đơn hàng #1984 của bạn đã được giao")
ALL_CONCATS = [c.value for c in Concat]


# --------------------------------------------------------------------------- helpers


def reassemble(parts: list[Part]) -> str:
    """Receive parts as an SMSC would deliver them: decode_mo + Reassembler."""
    reassembler = Reassembler()
    result = None
    for part in reversed(parts):  # out of order on purpose
        assert result is None, "message completed before its last part arrived"
        mo = decode_mo(part.short_message, part.data_coding, part.esm_class, list(part.tlvs))
        result = reassembler.add(("84900000001", "8088"), mo)
    assert result is not None
    assert len(reassembler) == 0
    return result


def body(part: Part) -> bytes:
    return part.short_message[len(part.udh) :] if part.udh else part.short_message


def part_texts(parts: list[Part]) -> list[str]:
    """Each part's own text (strict decoding: a cut surrogate pair raises)."""
    out = []
    for part in parts:
        data = body(part)
        if part.data_coding == 8:
            out.append(data.decode("utf-16-be"))  # strict: no half surrogate pair
        else:
            out.append(decode_text(data, part.data_coding))
    return out


def check_fits(parts: list[Part], concat: str) -> None:
    """Every part fits one SMS, and no part ends after an ESC or inside a surrogate pair."""
    if len(parts) == 1 and not parts[0].udh and not parts[0].sar:
        part = parts[0]
        if part.tlvs:  # message_payload: everything in the TLV
            assert concat == "payload" and part.short_message == b""
            return
        assert len(part.short_message) <= (160 if part.data_coding == 0 else 140)
        return
    for seq, part in enumerate(parts, 1):
        data = body(part)
        assert data, "empty part"
        if concat in ("udh8", "udh16"):
            assert part.esm_class == ESM_UDHI and part.udh is not None
            assert part.udh[-2:] == bytes((len(parts), seq))
            assert part.sar is None
        else:
            assert concat == "sar" and part.udh is None and part.esm_class == 0
            assert part.sar is not None and part.sar[1:] == (len(parts), seq)
        if part.data_coding == 0:
            limit = {"udh8": 153, "udh16": 152, "sar": 153}[concat]
            assert len(data) <= limit
            assert data[-1] != 0x1B, "part ends after an ESC"
        else:
            assert len(part.short_message) <= 140
            assert len(data) <= (132 if concat == "udh16" else 134)
        if part.data_coding == 8:
            assert len(data) % 2 == 0


# --------------------------------------------------------------------------- strategies

_VIET_BASES = "aeiouyAEIOUYdD"
_VIET_MARKS = ["\u0300", "\u0301", "\u0303", "\u0309", "\u0323", "\u0302", "\u0306", "\u031b"]
_EMOJI = [
    "😀",
    "👍🏽",
    "👩🏽‍💻",
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈",
    "🇻🇳",
    "🇺🇸",
    "1️⃣",
    "❤️",
    "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    "🧑🏿‍🤝‍🧑🏻",
]
_SINGLES = list("abcxyz 019.,!?@£$") + list("€{}[]~^|\\\f") + ["ж", "Đ", "中", "é", "\r\n"]
_INDIC = ["क्ष", "क्षि", "न्त्र", "কি"]

cluster = st.one_of(
    st.sampled_from(_SINGLES),
    st.builds(
        lambda base, marks: base + "".join(marks),
        st.sampled_from(_VIET_BASES),
        st.lists(st.sampled_from(_VIET_MARKS), min_size=1, max_size=2),
    ),
    st.sampled_from(_EMOJI),
    st.sampled_from(_INDIC),
)
clusters = st.lists(cluster, max_size=400)

gsm_heavy = st.text(alphabet=st.sampled_from([*GSM_BASIC.replace("\x1b", ""), "€", "{", "^"]))
any_text = st.one_of(
    st.text(max_size=600),
    gsm_heavy,
    st.text(alphabet=st.sampled_from(["a", "€", "😀", "ж", "\u0301", "\u200d", "🏽"])),
    clusters.map("".join),
)
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- property tests


@FAST
@given(text=any_text, concat=st.sampled_from(ALL_CONCATS), ref=st.integers(0, 65535))
def test_any_text_splits_into_fitting_parts_that_reassemble_to_the_nfc_text(
    text: str, concat: str, ref: int
) -> None:
    parts = split(text, concat=concat, ref=ref, max_parts=255)
    check_fits(parts, concat)
    assert reassemble(parts) == unicodedata.normalize("NFC", text)
    assert {p.data_coding for p in parts} <= {0, 8}
    assert len({p.data_coding for p in parts}) == 1


@FAST
@given(text=any_text, concat=st.sampled_from(["udh8", "udh16", "sar"]))
def test_forced_ucs2_parts_fit_and_reassemble(text: str, concat: str) -> None:
    parts = split(text, coding="ucs2", concat=concat, max_parts=255)
    assert all(p.data_coding == 8 for p in parts)
    check_fits(parts, concat)
    assert reassemble(parts) == unicodedata.normalize("NFC", text)


@FAST
@given(
    text=st.text(alphabet=st.characters(max_codepoint=255), max_size=800),
    concat=st.sampled_from(ALL_CONCATS),
)
def test_forced_latin1_parts_fit_and_reassemble(text: str, concat: str) -> None:
    parts = split(text, coding="latin1", concat=concat, max_parts=255)
    assert all(p.data_coding == 3 for p in parts)
    check_fits(parts, concat)
    assert reassemble(parts) == unicodedata.normalize("NFC", text)


@FAST
@given(
    cl=st.lists(cluster, min_size=20, max_size=400),
    concat=st.sampled_from(["udh8", "udh16", "sar"]),
)
def test_parts_never_end_inside_a_grapheme_cluster(cl: list[str], concat: str) -> None:
    # The clusters are built by construction (base + marks, emoji sequences, flags, CR LF,
    # Indic conjuncts), so the cluster boundaries are known independently of the code.
    nfc_clusters = [unicodedata.normalize("NFC", c) for c in cl]
    text = "".join(nfc_clusters)
    assert unicodedata.normalize("NFC", text) == text
    boundaries = {0, *accumulate(len(c) for c in nfc_clusters)}
    parts = split(text, concat=concat, max_parts=255)
    check_fits(parts, concat)
    cuts = list(accumulate(len(t) for t in part_texts(parts)))
    assert cuts[-1] == len(text)
    for cut in cuts:
        assert cut in boundaries, f"cut at {cut} inside a cluster: {text[cut - 3 : cut + 3]!r}"


# --------------------------------------------------------------------------- known vectors


def test_euro_after_152_septets_opens_part_two() -> None:
    parts = split("a" * 152 + "€" + "b" * 10)
    assert len(parts) == 2
    assert body(parts[0]) == b"a" * 152
    assert body(parts[1]) == b"\x1b\x65" + b"b" * 10
    assert parts[0].udh == bytes([5, 0, 3, 0, 2, 1])
    assert parts[1].udh == bytes([5, 0, 3, 0, 2, 2])


def test_euro_after_151_septets_with_udh16_opens_part_two() -> None:
    parts = split("a" * 151 + "€" + "b" * 10, concat="udh16", ref=0x1234)
    assert [body(p)[:2] for p in parts] == [b"aa", b"\x1b\x65"]
    assert parts[0].udh == bytes([6, 8, 4, 0x12, 0x34, 2, 1])


def test_emoji_after_66_cyrillic_letters_is_not_cut() -> None:
    parts = split("ж" * 66 + "😀" + "x" * 10)
    assert len(parts) == 2
    assert all(p.data_coding == 8 for p in parts)
    assert body(parts[0]) == ("ж" * 66).encode("utf-16-be")
    assert body(parts[1]).startswith("😀".encode("utf-16-be"))
    assert part_texts(parts) == ["ж" * 66, "😀" + "x" * 10]


def test_vietnamese_nfd_goes_out_as_one_nfc_ucs2_part() -> None:
    nfc = unicodedata.normalize("NFC", NFD)
    assert len(NFD) > len(nfc) == 35
    parts = split(NFD)
    assert len(parts) == 1
    assert parts[0].data_coding == 8 and parts[0].esm_class == 0 and parts[0].udh is None
    assert parts[0].short_message == nfc.encode("utf-16-be")


def test_long_vietnamese_nfd_splits_between_letters_not_inside_them() -> None:
    text = (NFD + " ") * 6
    parts = split(text)
    nfc = unicodedata.normalize("NFC", text)
    assert len(parts) == 4  # 216 characters, 67 a part
    assert "".join(part_texts(parts)) == nfc
    assert reassemble(parts) == nfc


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


def test_gsm_160_is_one_part_161_is_two() -> None:
    assert len(split("a" * 160)) == 1
    assert [len(body(p)) for p in split("a" * 161)] == [153, 8]
    # an extension character costs two septets
    assert [len(body(p)) for p in split("a" * 159 + "€")] == [153, 8]
    assert len(split("a" * 158 + "€")) == 1


def test_ucs2_70_is_one_part_71_is_two() -> None:
    assert len(split("ж" * 70)) == 1
    parts = split("ж" * 71)
    assert [len(body(p)) for p in parts] == [134, 8]
    assert [len(body(p)) for p in split("ж" * 71, concat="udh16")] == [132, 10]


def test_sar_parts_carry_tlvs_and_no_udh() -> None:
    parts = split("a" * 200, concat="sar", ref=0x1FF)
    assert [p.sar for p in parts] == [(0x1FF, 2, 1), (0x1FF, 2, 2)]
    assert parts[0].tlvs == (
        (Tag.SAR_MSG_REF_NUM, b"\x01\xff"),
        (Tag.SAR_TOTAL_SEGMENTS, b"\x02"),
        (Tag.SAR_SEGMENT_SEQNUM, b"\x01"),
    )
    assert [len(p.short_message) for p in parts] == [153, 47]
    assert all(p.esm_class == 0 and p.udh is None for p in parts)


def test_payload_puts_the_whole_text_in_one_tlv() -> None:
    text = "ж" * 100 + "😀"
    (part,) = split(text, concat="payload")
    assert part.short_message == b"" and part.esm_class == 0 and part.udh is None
    assert part.tlvs == ((Tag.MESSAGE_PAYLOAD, text.encode("utf-16-be")),)
    # A text that fits one SMS goes in short_message whatever the concat mode.
    (short,) = split("hi", concat="payload")
    assert short.short_message == b"hi" and short.tlvs == ()


def test_payload_still_obeys_max_parts() -> None:
    with pytest.raises(TextError, match="needs 3 parts, max 2"):
        split("a" * 400, concat="payload", max_parts=2)


def test_too_many_parts_is_a_clear_error() -> None:
    with pytest.raises(TextError, match=r"needs 14 parts, max 10"):
        split("a" * 2000)
    assert len(split("a" * 2000, max_parts=14)) == 14


def test_forced_codings() -> None:
    assert split("hello", coding="ucs2")[0].short_message == "hello".encode("utf-16-be")
    (latin,) = split("café @ 10", coding="latin1")
    assert latin.data_coding == 3 and latin.short_message == "café @ 10".encode("latin-1")
    assert split("ñandú")[0].data_coding == 8  # ú is Latin-1 but not GSM: auto picks UCS2
    with pytest.raises(TextError, match=r"'ж' \(U\+0436\).*GSM"):
        split("abc ж", coding="gsm")
    with pytest.raises(TextError, match=r"'€' \(U\+20AC\).*Latin-1"):
        split("10 €", coding="latin1")
    with pytest.raises(TextError, match=r"U\+D800.*UCS2"):
        split("a\ud800b")
    with pytest.raises(TextError, match="koi8"):
        split("a", coding="koi8")


def test_auto_chooses_gsm_only_when_every_character_fits() -> None:
    assert split("Ma don hang: 1984 {OK} €5")[0].data_coding == 0
    assert split("ç")[0].data_coding == 8  # GSM has Ç, not ç
    assert split("`")[0].data_coding == 8
    assert split("Ω")[0].short_message == b"\x15"  # U+2126 OHM SIGN normalises to Ω


def test_nfc_first_can_make_text_gsm() -> None:
    (part,) = split("e\u0301")  # e + combining acute → é, which is GSM
    assert part.data_coding == 0 and part.short_message == b"\x05"


def test_crlf_is_not_split() -> None:
    parts = split("a" * 152 + "\r\n" + "b" * 10)
    assert body(parts[0]) == b"a" * 152
    assert body(parts[1]).startswith(b"\r\n")


def test_flags_stay_paired() -> None:
    text = "🇻🇳" * 40  # 80 regional indicators, 4 octets each
    parts = split(text)
    for t in part_texts(parts):
        assert len(t) % 2 == 0
    assert reassemble(parts) == text


def test_cluster_longer_than_a_part_falls_back_to_code_points() -> None:
    text = "x" + "a" + "\u0336" * 200  # "x" + one 201-code-point cluster
    nfc = unicodedata.normalize("NFC", text)
    assert len(nfc) == 202
    parts = split(text)
    # no point moving the cluster to a part of its own: it cannot fit one anyway
    assert [len(t) for t in part_texts(parts)] == [67, 67, 67, 1]
    assert reassemble(parts) == nfc


def test_zwj_family_moves_whole_to_next_part() -> None:
    family = "👨‍👩‍👧‍👦"  # 7 code points, 11 UTF-16 units
    parts = split("ж" * 60 + family + "x")
    assert part_texts(parts) == ["ж" * 60, family + "x"]


def test_empty_text_is_one_empty_part() -> None:
    assert split("") == [Part(0, 0, b"", None, None, ())]


def test_split_is_fast_on_the_hot_path() -> None:
    otp = "Your OTP is 123456. Do not share it with anyone."
    viet = unicodedata.normalize("NFC", NFD) * 3
    start = time.perf_counter()
    for _ in range(5000):
        split(otp)
        split(viet, ref=7)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"{elapsed / 10000 * 1e6:.1f} µs per split"


# --------------------------------------------------------------------------- refs


def test_ref_counter_increments_per_destination_and_wraps() -> None:
    refs = RefCounter(bits=8, start=254)
    assert [refs.next("84901") for _ in range(4)] == [254, 255, 0, 1]
    first_other = refs.next("84902")
    assert first_other == 255  # a new destination takes the next rolling start
    assert refs.next("84902") == 0
    assert refs.next("84901") == 2


def test_ref_counter_16_bit_wraps_at_65536() -> None:
    refs = RefCounter(bits=16, start=65535)
    assert [refs.next("d") for _ in range(3)] == [65535, 0, 1]
    with pytest.raises(ValueError):
        RefCounter(bits=12)


def test_ref_counter_never_repeats_within_256_consecutive_messages() -> None:
    refs = RefCounter()
    got = [refs.next("84901") for _ in range(256)]
    assert len(set(got)) == 256


def test_ref_counter_memory_is_bounded() -> None:
    refs = RefCounter(start=0, max_destinations=3)
    for n in range(10):
        refs.next(f"d{n}")
    assert len(refs._last) == 3


# --------------------------------------------------------------------------- MO decoding


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


# --------------------------------------------------------------------------- reassembly


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reassembler_joins_out_of_order_and_ignores_duplicates() -> None:
    r = Reassembler()
    key = ("84901", "8088")
    assert r.add(key, MoPart("c", (9, 3, 3))) is None
    assert r.add(key, MoPart("a", (9, 3, 1))) is None
    assert r.add(key, MoPart("a", (9, 3, 1))) is None
    assert r.add(key, MoPart("b", (9, 3, 2))) == "abc"
    assert len(r) == 0


def test_reassembler_keeps_keys_and_refs_apart() -> None:
    r = Reassembler()
    assert r.add(("x", "1"), MoPart("x1", (1, 2, 1))) is None
    assert r.add(("y", "1"), MoPart("y2", (1, 2, 2))) is None
    assert r.add(("x", "1"), MoPart("z2", (2, 2, 2))) is None
    assert r.add(("x", "1"), MoPart("x2", (1, 2, 2))) == "x1x2"
    assert r.add(("plain", "1"), MoPart("single", None)) == "single"
    assert len(r) == 2


def test_reassembler_rejoins_a_surrogate_pair_split_by_the_handset() -> None:
    data = "ab😀".encode("utf-16-be")
    r = Reassembler()
    first = decode_mo(b"\x05\x00\x03\x01\x02\x01" + data[:6], 8, ESM_UDHI, [])
    second = decode_mo(b"\x05\x00\x03\x01\x02\x02" + data[6:], 8, ESM_UDHI, [])
    assert r.add(("k", "k"), first) is None
    assert r.add(("k", "k"), second) == "ab😀"


def test_reassembler_expires_partial_messages_with_gap_marks() -> None:
    clock = FakeClock()
    r = Reassembler(timeout=60, clock=clock)
    r.add(("a", "1"), MoPart("one ", (5, 4, 1)))
    r.add(("a", "1"), MoPart("three", (5, 4, 3)))
    clock.now += 30
    r.add(("b", "1"), MoPart("later", (1, 2, 1)))
    assert r.expire() == []
    clock.now += 31
    assert r.expire() == [(("a", "1"), f"one {MISSING_PART}three{MISSING_PART}")]
    assert len(r) == 1
    clock.now += 30
    assert r.expire() == [(("b", "1"), f"later{MISSING_PART}")]
    assert len(r) == 0


def test_reassembler_bounds_pending_messages() -> None:
    r = Reassembler(max_pending=2)
    for n in range(4):
        r.add((str(n), "x"), MoPart(f"p{n}", (n, 2, 1)))
    assert len(r) == 2
    assert r.expire() == [(("0", "x"), "p0…"), (("1", "x"), "p1…")]


def test_reassembler_refuses_a_part_larger_than_a_part_can_be() -> None:
    r = Reassembler(max_part=100)
    mo = decode_mo(b"", 0, 0, [(0x020C, b"\x00\x07"), (0x020E, b"\x02"), (0x020F, b"\x01"),
                              (0x0424, b"x" * 101)])  # fmt: skip
    assert mo.size == 101 and mo.concat == (7, 2, 1)
    with pytest.raises(MoRefused) as refused:
        r.add(("a", "1"), mo)
    assert refused.value.reason == "too_large"
    assert str(refused.value) == "MO part of 101 octets, at most 100 in a part"
    assert len(r) == 0 and r.bytes == 0
    # A message that is not concatenated is not held, so its size is not the reassembler's.
    assert r.add(("a", "1"), MoPart("y" * 500, None, 500)) == "y" * 500


def test_reassembler_bounds_octets_held_evicting_the_oldest_then_refusing() -> None:
    r = Reassembler(max_part=100, max_bytes=250)
    for n in range(3):  # 3 x 80 = 240 octets pending
        assert r.add((str(n), "x"), MoPart("p" * 80, (n, 2, 1), 80)) is None
    assert r.bytes == 240 and r.evicted == 0
    # One more: the oldest message is evicted (published partial by expire), not dropped.
    assert r.add(("3", "x"), MoPart("q" * 80, (3, 2, 1), 80)) is None
    assert (len(r), r.evicted, r.has_evicted) == (3, 1, True)
    # Evicted texts hold room until taken: 2 more evictions fit there, the next does not.
    for n in range(4, 6):
        r.add((str(n), "x"), MoPart("r" * 80, (n, 2, 1), 80))
    assert r.evicted == 3 and r.bytes == 240 + 240
    with pytest.raises(MoRefused) as refused:
        r.add(("7", "x"), MoPart("s" * 80, (7, 2, 1), 80))
    assert refused.value.reason == "busy"
    assert r.bytes <= 2 * r.max_bytes
    out = r.expire()  # the caller takes the evicted ones: room again
    assert [key for key, _text in out] == [("0", "x"), ("1", "x"), ("2", "x")]
    assert out[0][1] == "p" * 80 + MISSING_PART
    assert r.bytes == 240
    assert r.add(("7", "x"), MoPart("s" * 80, (7, 2, 1), 80)) is None


def test_reassembler_counts_a_repeated_part_once_and_frees_a_completed_message() -> None:
    r = Reassembler(max_part=100, max_bytes=1000)
    r.add(("a", "1"), MoPart("x" * 90, (1, 2, 1), 90))
    r.add(("a", "1"), MoPart("x" * 90, (1, 2, 1), 90))  # the SMSC delivered it again
    assert r.bytes == 90
    assert r.add(("a", "1"), MoPart("y" * 10, (1, 2, 2), 10)) == "x" * 90 + "y" * 10
    assert r.bytes == 0
