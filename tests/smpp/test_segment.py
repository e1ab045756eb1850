"""Outbound segmentation (smppgw.smpp.text.segment): split, part sizes, clusters, refs."""

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
    Concat,
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
