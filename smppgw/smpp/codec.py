"""SMPP 3.4 PDU codec: typed PDUs (:mod:`smppgw.smpp.pdu`) ⇄ wire bytes.

The loops run over each PDU class's layout, compiled once into runs of fixed-size integers
(one ``struct`` call per run), C-strings and the short_message
(:func:`smppgw.smpp.fields.hot_ops`); the field types are inlined here rather than called,
which keeps the codec at hundreds of thousands of PDUs a second without hand-written
per-PDU code. Only a failed encode takes the slow path that asks each field type what is
wrong (:func:`explain_encode_error`).

Strict where it protects us (lengths, overruns), lenient where real SMSCs are sloppy (C-string
TLVs without NUL, integer TLVs of odd size, error responses without a body, a response's last
C-string without its NUL).
"""

from __future__ import annotations

import struct
from typing import Any

from smppgw.smpp.constants import RESPONSE_BIT, Status
from smppgw.smpp.errors import FrameError, PduError, UnknownCommandError
from smppgw.smpp.fields import CSTR, INTS, MAX_MESSAGE_ID
from smppgw.smpp.framing import DEFAULT_MAX_PDU_LENGTH, HEADER, HEADER_SIZE, FrameReader
from smppgw.smpp.pdu import PDU_CLASSES, Pdu
from smppgw.smpp.tlv import TLV_HEADER, decode_tlvs
from smppgw.smpp.tlv import problem as tlv_problem

# Bound once: CPython 3.11 compiles ``NAME.attr(...)`` of an imported NAME as a module
# attribute call, without the method-call fast path, which cost ~5 % of an encode.
_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from
_pack_tlv_header = TLV_HEADER.pack
_pdu_class = PDU_CLASSES.get


def encode(pdu: Pdu) -> bytes:
    """Wire bytes of ``pdu``; raises ValueError naming the field that cannot be encoded."""
    parts: list[bytes] = []
    append = parts.append
    try:
        for kind, get, pack in pdu.encode_ops:
            if kind == CSTR:
                raw = get(pdu).encode("latin-1")
                if 0 in raw:
                    # An embedded NUL would end the C-string early and shift every later
                    # field: the peer would read a different PDU than the one we meant.
                    raise ValueError("NUL in C-Octet String")
                append(raw + b"\x00")
            elif kind == INTS:
                append(pack(*get(pdu)))  # type: ignore[misc]
            else:
                sm = get(pdu)
                append(bytes((len(sm),)))
                append(sm)
        for tag, value in pdu.tlvs:
            append(_pack_tlv_header(tag, len(value)))
            append(value)
        body = b"".join(parts)
        return (
            _pack_header(HEADER_SIZE + len(body), pdu.command_id, pdu.status, pdu.sequence) + body
        )
    except (UnicodeEncodeError, struct.error, ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"{pdu.name}: {explain_encode_error(pdu)}") from exc


def explain_encode_error(pdu: Pdu) -> str:
    """Slow path: find which field made encode() fail, for a message a person can act on."""
    for name in ("sequence", "status"):
        value = getattr(pdu, name)
        if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            return f"{name}: {value!r} is not an unsigned 32-bit integer"
    for f in pdu.layout:
        problem = f.problem(pdu)
        if problem is not None:
            return problem
    items: list[Any] = pdu.tlvs  # typed as pairs, but this path exists for what is not
    for item in items:
        problem = tlv_problem(item)
        if problem is not None:
            return problem
    return "cannot encode"


def decode(frame: bytes | bytearray | memoryview, max_length: int = DEFAULT_MAX_PDU_LENGTH) -> Pdu:
    """Decode one whole PDU (header included).

    Raises :class:`FrameError` when the length is impossible, :class:`UnknownCommandError`
    for an unknown command id and :class:`PduError` for a body that does not parse.
    """
    data = bytes(frame)
    size = len(data)
    if size < HEADER_SIZE:
        raise FrameError(f"{size} octets is shorter than the 16-octet header")
    length, command_id, status, sequence = _unpack_header(data)
    if length < HEADER_SIZE or length > max_length:
        raise FrameError(
            f"command_length {length} outside 16..{max_length}",
            command_id=command_id,
            sequence=sequence,
            status=Status.ESME_RINVCMDLEN,
        )
    if length != size:
        raise FrameError(
            f"command_length {length} but {size} octets in frame",
            command_id=command_id,
            sequence=sequence,
            status=Status.ESME_RINVCMDLEN,
        )
    cls = _pdu_class(command_id)
    if cls is None:
        raise UnknownCommandError(
            "unknown command_id",
            command_id=command_id,
            sequence=sequence,
            status=Status.ESME_RINVCMDID,
        )
    if length == HEADER_SIZE and cls.body_field_count:
        if command_id & RESPONSE_BIT:
            # Error responses (and some sloppy OK ones) arrive without a body.
            return cls(sequence=sequence, status=status)
        raise PduError(
            "body missing",
            command_id=command_id,
            sequence=sequence,
            status=Status.ESME_RINVCMDLEN,
        )
    values: list[Any] = []
    pos = HEADER_SIZE
    is_resp = bool(command_id & RESPONSE_BIT)
    try:
        for kind, name, unpack_from, width in cls.decode_ops:
            if kind == CSTR:
                end = data.find(0, pos)
                if end < 0 and not is_resp:
                    raise PduError(
                        f"{name}: C-Octet String not NUL-terminated",
                        command_id=command_id,
                        sequence=sequence,
                        status=Status.ESME_RINVMSGLEN,
                    )
                # A response's last C-string without NUL: keep what is there.
                stop = end if end >= 0 else size
                if name == "message_id" and stop - pos > MAX_MESSAGE_ID:
                    raise PduError(
                        f"message_id: {stop - pos} octets, at most {MAX_MESSAGE_ID}",
                        command_id=command_id,
                        sequence=sequence,
                        status=Status.ESME_RINVMSGLEN,
                    )
                values.append(data[pos:stop].decode("latin-1"))
                pos = stop + 1 if end >= 0 else size
            elif kind == INTS:
                values.extend(unpack_from(data, pos))  # type: ignore[misc]
                pos += width
            else:
                sm_length = data[pos]
                pos += 1
                if pos + sm_length > size:
                    raise PduError(
                        f"sm_length {sm_length} overruns the PDU",
                        command_id=command_id,
                        sequence=sequence,
                        status=Status.ESME_RINVMSGLEN,
                    )
                values.append(data[pos : pos + sm_length])
                pos += sm_length
    except (struct.error, IndexError):
        raise PduError(
            "body ends inside a mandatory parameter",
            command_id=command_id,
            sequence=sequence,
            status=Status.ESME_RINVMSGLEN,
        ) from None
    tlvs: list[tuple[int, bytes]] = []
    if pos < size:
        if not cls.has_tlvs:
            raise PduError(
                f"{size - pos} unexpected octets after the body",
                command_id=command_id,
                sequence=sequence,
                status=Status.ESME_RINVCMDLEN,
            )
        tlvs = decode_tlvs(data, pos, command_id, sequence)
    return cls(sequence, status, tlvs, *values)


def decode_many(data: bytes) -> list[Pdu]:
    """Decode a byte string holding whole PDUs back to back (tests, logs)."""
    reader = FrameReader()
    frames = reader.feed(data)
    if reader.buffered:
        raise FrameError(f"{reader.buffered} trailing octets after the last PDU")
    return [decode(f) for f in frames]
