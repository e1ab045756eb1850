"""TLVs on their own (smppgw.smpp.tlv): values by tag type, the TLV block, the checks."""

from __future__ import annotations

import pytest

from smppgw.smpp.constants import Status, Tag
from smppgw.smpp.errors import PduError
from smppgw.smpp.tlv import (
    as_int,
    as_str,
    decode_tlvs,
    problem,
    tlv_value,
)


def test_values_are_encoded_by_the_tags_type() -> None:
    assert tlv_value(Tag.SAR_MSG_REF_NUM, 0x0102) == b"\x01\x02"  # 2-octet integer
    assert tlv_value(Tag.MESSAGE_STATE, 2) == b"\x02"
    assert tlv_value(Tag.RECEIPTED_MESSAGE_ID, "6A") == b"6A\x00"  # C-string: NUL added
    assert tlv_value(Tag.MESSAGE_PAYLOAD, "é") == b"\xe9"  # octet string: no NUL
    assert tlv_value(0x1400, 7) == b"\x07"  # unknown tag: one octet
    with pytest.raises(ValueError, match="0x020c: 65536 does not fit an unsigned 2-octet"):
        tlv_value(Tag.SAR_MSG_REF_NUM, 1 << 16)


def test_reading_is_lenient_about_sizes_and_nul() -> None:
    assert as_int(b"\x00\x02") == 2 and as_int(b"") is None and as_int(None) is None
    assert as_str(b"6A3F") == "6A3F" and as_str(b"6A\x00junk") == "6A" and as_str(None) is None


def test_a_block_decodes_in_wire_order_and_overruns_name_the_tag() -> None:
    data = b"HDR" + b"\x14\x00\x00\x00" + b"\x04\x27\x00\x01\x02"
    assert decode_tlvs(data, 3, 5, 9) == [(0x1400, b""), (0x0427, b"\x02")]
    with pytest.raises(PduError, match="TLV 0x0427 length 2 overruns") as overrun:
        decode_tlvs(b"\x04\x27\x00\x02\x01", 0, 5, 9)
    assert (overrun.value.command_id, overrun.value.sequence) == (5, 9)
    assert overrun.value.status == Status.ESME_RINVOPTPARSTREAM
    with pytest.raises(PduError, match="truncated TLV header at offset 0"):
        decode_tlvs(b"\x04\x27\x00", 0, 5, 9)


@pytest.mark.parametrize(
    ("item", "found"),
    [
        ((0x0427, b"\x02"), None),
        ((0x0427,), "tlvs: (1063,) is not a (tag, value) pair"),
        ((1 << 16, b""), "TLV tag 65536 is not an unsigned 16-bit integer"),
        ((0x0427, "2"), "TLV 0x0427: value must be bytes, got str"),
        ((0x0424, bytes(1 << 16)), "TLV 0x0424: 65536 octets, at most 65535"),
    ],
)
def test_problem_names_what_cannot_be_encoded(item: object, found: str | None) -> None:
    assert problem(item) == found
