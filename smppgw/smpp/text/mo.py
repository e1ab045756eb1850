"""Inbound: one deliver_sm / data_sm → its text and where it belongs in a longer message.

Concatenation info comes from the UDH (IE 0x00 with an 8-bit ref, 0x08 with a 16-bit ref)
when UDHI is set, else from the SAR TLVs. :mod:`smppgw.smpp.text.reassembly` joins the parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smppgw.smpp.constants import ESM_UDHI, Tag
from smppgw.smpp.text.coding import decode_raw
from smppgw.smpp.text.ucs2 import clean


@dataclass(frozen=True, slots=True)
class MoPart:
    """One deliver_sm's text and its (ref, total, seq) when it is part of a longer message.

    A concatenated part's UCS2 text may end or start with half a surrogate pair (handsets do
    split them); :class:`Reassembler` rejoins them. Unconcatenated text is always clean.
    ``size`` is the user data's length in octets as received (UDH excluded); 0 when not
    known, and then the text's length stands in for it.
    """

    text: str
    concat: tuple[int, int, int] | None
    size: int = field(default=0, compare=False)


def _parse_udh(udh: bytes) -> tuple[int, int, int] | None:
    pos = 0
    found: tuple[int, int, int] | None = None
    while pos + 2 <= len(udh):
        iei, length = udh[pos], udh[pos + 1]
        value = udh[pos + 2 : pos + 2 + length]
        if len(value) < length:
            break
        if iei == 0x00 and length == 3:
            found = (value[0], value[1], value[2])
        elif iei == 0x08 and length == 4:
            found = ((value[0] << 8) | value[1], value[2], value[3])
        pos += 2 + length
    return found


def _sar(tlvs: list[tuple[int, bytes]]) -> tuple[int, int, int] | None:
    ref = total = seq = None
    for tag, value in tlvs:
        if not value:
            continue
        if tag == Tag.SAR_MSG_REF_NUM:
            ref = int.from_bytes(value[:2], "big")
        elif tag == Tag.SAR_TOTAL_SEGMENTS:
            total = value[-1]
        elif tag == Tag.SAR_SEGMENT_SEQNUM:
            seq = value[-1]
    if ref is None or total is None or seq is None:
        return None
    return (ref, total, seq)


def decode_mo(
    short_message: bytes, data_coding: int, esm_class: int, tlvs: list[tuple[int, bytes]]
) -> MoPart:
    """Text and concatenation info of one inbound deliver_sm / data_sm; never raises.

    The body is ``short_message``, or the message_payload TLV when short_message is empty.
    With UDHI set the UDH is stripped and its concatenation IE (0x00 or 0x08) read; else SAR
    TLVs give it. Concatenation info that makes no sense (total < 2, seq outside 1..total)
    is dropped and the part delivered as a message of its own.
    """
    data = short_message
    if not data:
        for tag, value in tlvs:
            if tag == Tag.MESSAGE_PAYLOAD:
                data = value
                break
    concat: tuple[int, int, int] | None = None
    if esm_class & ESM_UDHI and data:
        udhl = data[0]
        if 1 + udhl <= len(data):
            concat = _parse_udh(data[1 : 1 + udhl])
            data = data[1 + udhl :]
    if concat is None:
        concat = _sar(tlvs)
    if concat is not None and not (concat[1] >= 2 and 1 <= concat[2] <= concat[1]):
        concat = None
    text = decode_raw(data, data_coding)
    return MoPart(text if concat is not None else clean(text), concat, len(data))
