"""Delivery receipt parsing, message-id normalisation and receipt text (smppgw.smpp.receipt)."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smppgw.smpp.constants import ESM_DELIVERY_RECEIPT, ESM_UDHI, Tag
from smppgw.smpp.receipt import (
    _STANDARD,
    FINAL_STATES,
    STATES,
    Receipt,
    ReceiptError,
    _scanned_fields,
    _text_fields,
    format_receipt_text,
    is_receipt,
    normalize_message_id,
    parse_receipt,
)

STANDARD = (
    b"id:0123456789 sub:001 dlvrd:001 submit date:2405311200 done date:2405311201 "
    b"stat:DELIVRD err:000 text:Your order 1984 is"
)


def tlvs(message_id: str | None = None, state: int | None = None, net: bytes | None = None):
    out: list[tuple[int, bytes]] = []
    if message_id is not None:
        out.append((Tag.RECEIPTED_MESSAGE_ID, message_id.encode() + b"\x00"))
    if state is not None:
        out.append((Tag.MESSAGE_STATE, bytes([state])))
    if net is not None:
        out.append((Tag.NETWORK_ERROR_CODE, net))
    return out


# --------------------------------------------------------------------------- parsing


def test_standard_text_receipt() -> None:
    r = parse_receipt(STANDARD, [])
    assert r == Receipt(
        message_id="0123456789",
        state="DELIVRD",
        final=True,
        error="000",
        submit_date=datetime(2024, 5, 31, 12, 0),
        done_date=datetime(2024, 5, 31, 12, 1),
        sub="001",
        dlvrd="001",
        text="Your order 1984 is",
    )


def test_tlvs_only() -> None:
    r = parse_receipt(b"", tlvs("A1B2", 5, b"\x03\x00\x45"))
    assert (r.message_id, r.state, r.final, r.error) == ("A1B2", "UNDELIV", True, "030045")
    assert r.submit_date is None and r.text is None and r.sub is None


def test_tlv_id_and_state_win_over_text() -> None:
    r = parse_receipt(STANDARD, tlvs("ff00", 8))
    assert r.message_id == "ff00"
    assert r.state == "REJECTD"
    assert r.error == "000"  # the text still fills what the TLVs lack
    assert r.done_date == datetime(2024, 5, 31, 12, 1)


def test_text_fills_state_when_tlv_state_missing_or_bogus() -> None:
    assert parse_receipt(STANDARD, tlvs("x")).state == "DELIVRD"
    assert parse_receipt(STANDARD, tlvs("x", 99)).state == "DELIVRD"


def test_every_message_state_value() -> None:
    for value, name in STATES.items():
        r = parse_receipt(b"", tlvs("1", value))
        assert r.state == name
        assert r.final == (name not in ("ENROUTE", "ACCEPTD"))
    assert {"DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "UNKNOWN", "REJECTD"} == FINAL_STATES


def test_uppercase_keys_twelve_digit_dates_and_extra_fields() -> None:
    text = (
        b"ID:5F3A SUB:001 DLVRD:000 Submit Date:240531120005 Done Date:240531120107 "
        b"STAT:UNDELIVERABLE ERR:0A1 IMSI:452041234567890 MCC:452 TEXT:Hello there"
    )
    r = parse_receipt(text, [])
    assert r.message_id == "5F3A"
    assert r.state == "UNDELIV"
    assert r.error == "0A1"
    assert r.submit_date == datetime(2024, 5, 31, 12, 0, 5)
    assert r.done_date == datetime(2024, 5, 31, 12, 1, 7)
    assert r.text == "Hello there"


def test_odd_spacing_missing_fields_and_nul_termination() -> None:
    r = parse_receipt(b"id: 77  stat :  DELIVERED   done_date:2405311201\x00", [])
    assert r.message_id == "77"
    assert r.state == "DELIVRD"
    assert r.done_date == datetime(2024, 5, 31, 12, 1)
    assert r.submit_date is None and r.error is None and r.sub is None and r.text is None


def test_empty_values_do_not_swallow_the_next_key() -> None:
    r = parse_receipt(b"id:9 sub: dlvrd: stat:EXPIRED err: text:", [])
    assert (r.sub, r.dlvrd, r.state, r.error, r.text) == ("", "", "EXPIRED", None, "")


def test_text_field_may_contain_keys() -> None:
    r = parse_receipt(b"id:1 stat:DELIVRD err:000 text:your id:42 stat:x", [])
    assert r.message_id == "1" and r.state == "DELIVRD" and r.text == "your id:42 stat:x"


@pytest.mark.parametrize(
    ("stat", "state"),
    [
        ("DELIVRD", "DELIVRD"),
        ("delivered", "DELIVRD"),
        ("UNDELIV", "UNDELIV"),
        ("Undeliverable", "UNDELIV"),
        ("REJECTD", "REJECTD"),
        ("REJECTED", "REJECTD"),
        ("EXPIRED", "EXPIRED"),
        ("DELETED", "DELETED"),
        ("ACCEPTD", "ACCEPTD"),
        ("ACCEPTED", "ACCEPTD"),
        ("UNKNOWN", "UNKNOWN"),
        ("ENROUTE", "ENROUTE"),
        ("2", "DELIVRD"),
        ("WHATEVER", "UNKNOWN"),
    ],
)
def test_stat_variants(stat: str, state: str) -> None:
    assert parse_receipt(f"id:1 stat:{stat} err:000".encode(), []).state == state


def test_bad_dates_are_none_not_errors() -> None:
    r = parse_receipt(b"id:1 submit date:2413991299 done date:24053 stat:DELIVRD", [])
    assert r.submit_date is None and r.done_date is None


def test_fourteen_digit_dates() -> None:
    r = parse_receipt(b"id:1 done date:20240531120107 stat:DELIVRD", [])
    assert r.done_date == datetime(2024, 5, 31, 12, 1, 7)


def test_missing_id_is_a_receipt_error() -> None:
    with pytest.raises(ReceiptError):
        parse_receipt(b"sub:001 stat:DELIVRD err:000", [])
    with pytest.raises(ReceiptError):
        parse_receipt(b"id: stat:DELIVRD", tlvs("", 2))
    with pytest.raises(ReceiptError):
        parse_receipt(b"", [])


# The standard layout has a one-regex fast path; whatever the text, it must give exactly the
# fields of the general scan. Texts are built from the standard pieces, near misses of them
# (case, separators, spacing, missing or repeated keys) and arbitrary characters.
_PIECES = st.sampled_from(
    [
        "id:", "sub:", "dlvrd:", "submit date:", "done date:", "stat:", "err:", "text:",
        "ID:", "Submit_Date:", "done  date:", "text :", " ", "  ", "\t", "\n", "\x00",
        "\xa0", "\x85", "\x1c", "0", "001", "2405311200", "DELIVRD", "abc", "id:x", ":",
    ]
)  # fmt: skip
_STANDARD_VALUES = st.text(st.characters(blacklist_categories=["Z", "C"]), max_size=6)


@settings(max_examples=600, deadline=None)
@given(pieces=st.lists(_PIECES | st.text(max_size=3), max_size=24))
def test_fast_path_fields_equal_the_general_scan(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert _text_fields(text) == _scanned_fields(text)


@settings(max_examples=600, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(STANDARD)), st.integers(0, 3), _PIECES | st.text(max_size=2)),
        min_size=1,
        max_size=3,
    )
)
def test_near_misses_of_the_standard_text_read_as_the_general_scan(
    edits: list[tuple[int, int, str]],
) -> None:
    text = STANDARD.decode()
    for at, cut, piece in edits:  # replace `cut` characters at `at` with `piece`
        text = text[:at] + piece + text[at + cut :]
    assert _text_fields(text) == _scanned_fields(text)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(_STANDARD_VALUES, min_size=7, max_size=7),
    free=st.none() | st.text(max_size=12),
)
def test_standard_layout_takes_the_fast_path_with_the_same_fields(
    values: list[str], free: str | None
) -> None:
    msgid, sub, dlvrd, submit, done, stat, err = values
    text = (
        f"id:{msgid or 'x'} sub:{sub} dlvrd:{dlvrd} submit date:{submit} done date:{done}"
        f" stat:{stat} err:{err}" + (f" text:{free}" if free is not None else "")
    )
    assert _STANDARD.fullmatch(text) is not None
    assert _text_fields(text) == _scanned_fields(text)


def test_is_receipt() -> None:
    assert is_receipt(ESM_DELIVERY_RECEIPT)
    assert is_receipt(0x20)  # intermediate delivery notification
    assert is_receipt(ESM_UDHI | ESM_DELIVERY_RECEIPT)
    assert not is_receipt(0x00)
    assert not is_receipt(ESM_UDHI)
    assert not is_receipt(0x08)  # SME delivery acknowledgement
    assert not is_receipt(0x10)  # SME manual/user acknowledgement


# --------------------------------------------------------------------------- id normalisation


def test_hex_and_decimal_ids_normalise_equal() -> None:
    assert normalize_message_id("0A1b", "hex") == normalize_message_id("2587", "decimal") == "2587"
    assert normalize_message_id("000A1B", "hex") == "2587"
    assert normalize_message_id("0002587", "decimal") == "2587"
    assert normalize_message_id(" ff ", "hex") == normalize_message_id("FF", "hex") == "255"


def test_string_rule_case_whitespace_leading_zeros() -> None:
    assert normalize_message_id(" 00Ab12C ") == "ab12c"
    assert normalize_message_id("AB12C", "string") == normalize_message_id("ab12c")
    assert normalize_message_id("0000") == "0"
    assert normalize_message_id("0", "decimal") == "0"
    assert normalize_message_id("000", "hex") == "0"
    assert normalize_message_id("") == ""


def test_invalid_for_base_falls_back_to_string_rule() -> None:
    assert normalize_message_id("0xyz-1", "hex") == "xyz-1"
    assert normalize_message_id("00AB", "decimal") == "ab"
    assert normalize_message_id("1_0", "hex") == "1_0"  # no Python-literal underscores
    with pytest.raises(ValueError):
        normalize_message_id("1", "octal")


@given(n=st.integers(0, 2**64))
def test_same_number_in_either_base_normalises_equal(n: int) -> None:
    zeros = "0" * (n % 3)
    assert normalize_message_id(zeros + f"{n:X}", "hex") == normalize_message_id(
        zeros + str(n), "decimal"
    )
    assert normalize_message_id(f"{n:x}", "hex") == normalize_message_id(f"{n:X}", "hex")


# --------------------------------------------------------------------------- formatting


def test_format_receipt_text_standard_layout() -> None:
    text = format_receipt_text(
        "7F3A",
        "DELIVRD",
        datetime(2024, 5, 31, 12, 0, 59),
        datetime(2024, 5, 31, 12, 1),
        text="Your order 1984 has shipped",
    )
    assert text == (
        b"id:7F3A sub:001 dlvrd:001 submit date:2405311200 done date:2405311201 "
        b"stat:DELIVRD err:000 text:Your order 1984 has "
    )
    assert b"dlvrd:000" in format_receipt_text(
        "1", "UNDELIV", datetime(2024, 1, 1), datetime(2024, 1, 1), err="001"
    )


ids = st.text(alphabet="0123456789abcdefABCDEF-xyz", min_size=1, max_size=65)
dates = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0)
)
texts = st.text(alphabet="abcdefghij ABC0123.,:", max_size=20).map(str.strip)


@settings(max_examples=200, deadline=None)
@given(
    message_id=ids,
    state=st.sampled_from(sorted(STATES.values())),
    submit=dates,
    done=dates,
    err=st.from_regex(r"[0-9A-F]{3}", fullmatch=True),
    text=texts,
)
def test_format_then_parse_round_trips(
    message_id: str, state: str, submit: datetime, done: datetime, err: str, text: str
) -> None:
    r = parse_receipt(format_receipt_text(message_id, state, submit, done, err, text), [])
    assert r.message_id == message_id
    assert r.state == state
    assert r.final == (state in FINAL_STATES)
    assert (r.submit_date, r.done_date) == (submit, done)
    assert r.error == err
    assert r.text == text
    assert r.dlvrd == ("001" if state == "DELIVRD" else "000")


tlv_lists = st.lists(
    st.tuples(
        st.sampled_from(
            [Tag.RECEIPTED_MESSAGE_ID, Tag.MESSAGE_STATE, Tag.NETWORK_ERROR_CODE, 0x1400, 0x0001]
        ),
        st.binary(max_size=12),
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.lists(
            st.sampled_from(
                [
                    "id:",
                    "ID:x",
                    "stat:",
                    "submit date:",
                    "done date:9999999999",
                    "err:",
                    " ",
                    "\x00",
                ]
            )
        ).map(lambda xs: "".join(xs).encode()),
    ),
    extra=tlv_lists,
)
def test_garbage_raises_only_receipt_error(data: bytes, extra: list[tuple[int, bytes]]) -> None:
    try:
        r = parse_receipt(data, extra)
    except ReceiptError:
        return
    assert r.message_id and r.message_id == r.message_id.strip()
    assert r.state in STATES.values()
