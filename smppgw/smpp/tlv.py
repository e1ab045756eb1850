"""SMPP 3.4 optional parameters (TLVs): values by tag type, and the TLV block of a PDU.

TLVs stay raw ``(tag, value)`` pairs in wire order on a PDU, so vendor TLVs and odd lengths
survive a decode/encode round trip byte for byte; the functions here give typed access.
Lenient where real SMSCs are sloppy: C-string TLVs without their NUL, integer TLVs of an
odd size.
"""

from __future__ import annotations

import struct
from typing import Any

from smppgw.smpp.constants import TLV_CSTRING, TLV_INT_SIZE, Status
from smppgw.smpp.errors import PduError

TLV_HEADER = struct.Struct(">HH")
#: A TLV's length is a 16-bit field.
MAX_TLV_VALUE = 0xFFFF

Tlvs = list[tuple[int, bytes]]


def as_int(raw: bytes | None) -> int | None:
    """An integer TLV's number, whatever length the peer chose (None: absent or empty)."""
    if not raw:
        return None
    return int.from_bytes(raw, "big")


def as_str(raw: bytes | None) -> str | None:
    """A C-string TLV up to its NUL (or its end, for peers that leave the NUL out)."""
    if raw is None:
        return None
    end = raw.find(0)
    return (raw if end < 0 else raw[:end]).decode("latin-1")


def tlv_value(tag: int, value: int | str | bytes) -> bytes:
    """Wire bytes of a TLV value: integers sized by tag, C-strings NUL-terminated."""
    if isinstance(value, int):
        size = TLV_INT_SIZE.get(tag, 1)
        try:
            return int(value).to_bytes(size, "big")
        except OverflowError:
            raise ValueError(
                f"TLV 0x{tag:04x}: {value} does not fit an unsigned {size}-octet integer"
            ) from None
    if isinstance(value, str):
        raw = value.encode("latin-1")
        return raw + b"\x00" if tag in TLV_CSTRING else raw
    return bytes(value)


def decode_tlvs(data: bytes, pos: int, command_id: int, sequence: int) -> Tlvs:
    """The TLVs from ``pos`` to the end of PDU ``data``; :class:`PduError` on an overrun."""
    size = len(data)
    tlvs: Tlvs = []
    while pos < size:
        if pos + 4 > size:
            raise PduError(
                f"truncated TLV header at offset {pos}",
                command_id=command_id,
                sequence=sequence,
                status=Status.ESME_RINVOPTPARSTREAM,
            )
        tag, tlv_len = TLV_HEADER.unpack_from(data, pos)
        pos += 4
        if pos + tlv_len > size:
            raise PduError(
                f"TLV 0x{tag:04x} length {tlv_len} overruns the PDU",
                command_id=command_id,
                sequence=sequence,
                status=Status.ESME_RINVOPTPARSTREAM,
            )
        tlvs.append((tag, data[pos : pos + tlv_len]))
        pos += tlv_len
    return tlvs


def problem(item: object) -> str | None:
    """Why ``item`` cannot be encoded as a TLV, or None when it can."""
    tag: Any
    raw: Any
    try:
        tag, raw = item  # type: ignore[misc]
    except (TypeError, ValueError):
        return f"tlvs: {item!r} is not a (tag, value) pair"
    if not isinstance(tag, int) or not 0 <= tag <= 0xFFFF:
        return f"TLV tag {tag!r} is not an unsigned 16-bit integer"
    if not isinstance(raw, bytes | bytearray | memoryview):
        return f"TLV 0x{tag:04x}: value must be bytes, got {type(raw).__name__}"
    if len(raw) > MAX_TLV_VALUE:
        return f"TLV 0x{tag:04x}: {len(raw)} octets, at most {MAX_TLV_VALUE}"
    return None
