"""SMPP 3.4 PDU codec: bytes ⇄ typed PDUs.

Each PDU is a slotted dataclass whose fields, in declaration order, are its mandatory
parameters: ``str`` fields are C-Octet Strings, ``int`` fields are 1-octet integers and the
single ``bytes`` field is ``short_message`` with its ``sm_length`` prefix. That rule holds for
every PDU of SMPP 3.4, so the wire layout is derived from the class rather than written
twice. The layout is compiled once into runs of fixed-size integers (one ``struct`` call per
run) and C-strings, which keeps the codec at hundreds of thousands of PDUs a second without
hand-written per-PDU code.

TLVs stay raw ``(tag, value)`` pairs in wire order, so vendor TLVs and odd lengths survive a
decode/encode round trip byte for byte; typed access goes through :meth:`Pdu.tlv_int`,
:meth:`Pdu.tlv_str` and :meth:`Pdu.set_tlv`.

Strict where it protects us (lengths, overruns), lenient where real SMSCs are sloppy
(C-string TLVs without NUL, integer TLVs of odd size, error responses without a body).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from smppgw.smpp.constants import (
    RESPONSE_BIT,
    TLV_CSTRING,
    TLV_INT_SIZE,
    CommandId,
    Status,
    command_name,
)

HEADER = struct.Struct(">IIII")
TLV_HEADER = struct.Struct(">HH")
HEADER_SIZE = 16
DEFAULT_MAX_PDU_LENGTH = 64 * 1024
#: Longest ``message_id`` (SMPP 3.4 section 5.2.23: C-Octet String of at most 65 octets
#: with its NUL). It is the one C-string an SMSC hands us that we keep: in the receipt
#: map, the store and the published events. A longer one is a decode error, so a hostile
#: SMSC cannot make each id cost kilobytes there. Other C-strings are only bounded by the
#: PDU length: real SMSCs overrun the spec's sizes (long alphanumeric addresses) and
#: refusing those would lose their MO and receipts.
MAX_MESSAGE_ID = 64


class PduError(Exception):
    """A PDU that cannot be decoded or encoded.

    Carries what a peer needs to answer it: the command id and sequence (when the header
    could be read) and the command_status to put in a generic_nack or error response.
    """

    def __init__(
        self,
        reason: str,
        *,
        command_id: int | None = None,
        sequence: int | None = None,
        status: int = Status.ESME_RSYSERR,
    ) -> None:
        self.reason = reason
        self.command_id = command_id
        self.sequence = sequence
        self.status = status
        where = command_name(command_id) if command_id is not None else "pdu"
        seq = f" seq={sequence}" if sequence is not None else ""
        super().__init__(f"{where}{seq}: {reason}")


class FrameError(PduError):
    """The byte stream itself is broken (absurd command_length): the connection must close.

    ``frames`` holds the whole PDUs that :meth:`FrameReader.feed` cut from the same read
    before it met the broken length, so a session can still answer them (a receipt among
    them gets its deliver_sm_resp) before it closes.
    """

    def __init__(
        self,
        reason: str,
        *,
        command_id: int | None = None,
        sequence: int | None = None,
        status: int = Status.ESME_RSYSERR,
        frames: list[bytes] | None = None,
    ) -> None:
        super().__init__(reason, command_id=command_id, sequence=sequence, status=status)
        self.frames: list[bytes] = frames if frames is not None else []


class UnknownCommandError(PduError):
    """A well-framed PDU with a command id we do not know: answer generic_nack RINVCMDID."""


# --------------------------------------------------------------------------- layout


@dataclass(slots=True, frozen=True)
class _Cstr:
    name: str


@dataclass(slots=True, frozen=True)
class _Ints:
    names: tuple[str, ...]
    packer: struct.Struct
    getter: Callable[[Any], Any]


@dataclass(slots=True, frozen=True)
class _ShortMessage:
    name: str


_Segment = _Cstr | _Ints | _ShortMessage


def _compile_layout(cls: type[Pdu]) -> tuple[_Segment, ...]:
    """Group the body fields into C-strings, runs of u8 and the short_message."""
    segments: list[_Segment] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            names = tuple(run)
            packer = struct.Struct(">" + "B" * len(names))
            getter = _attrgetter_tuple(names)
            segments.append(_Ints(names, packer, getter))
            run.clear()

    for f in dataclasses.fields(cls):
        if f.name in _HEADER_FIELDS:
            continue
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        if kind == "int":
            run.append(f.name)
        elif kind == "str":
            close_run()
            segments.append(_Cstr(f.name))
        elif kind == "bytes":
            close_run()
            segments.append(_ShortMessage(f.name))
        else:  # pragma: no cover - a programming error in this module
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported field type {kind}")
    close_run()
    return tuple(segments)


def _attrgetter_tuple(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if len(names) == 1:
        only = names[0]
        return lambda obj: (getattr(obj, only),)
    from operator import attrgetter

    return attrgetter(*names)


_HEADER_FIELDS = frozenset({"sequence", "status", "tlvs"})

# The layout flattened for the hot loops: (kind, getter or name, struct function, size).
# Small-int kinds and pre-bound functions save an isinstance test and two attribute lookups
# per segment, which is ~10 % of an encode.
_CSTR, _INTS, _SM = 0, 1, 2
_EncodeOp = tuple[int, Callable[[Any], Any], Callable[..., bytes] | None]
_DecodeOp = tuple[int, str, Callable[[bytes, int], tuple[Any, ...]] | None, int]


def _compile_ops(
    layout: tuple[_Segment, ...],
) -> tuple[tuple[_EncodeOp, ...], tuple[_DecodeOp, ...]]:
    from operator import attrgetter

    enc: list[_EncodeOp] = []
    dec: list[_DecodeOp] = []
    for seg in layout:
        if isinstance(seg, _Cstr):
            enc.append((_CSTR, attrgetter(seg.name), None))
            dec.append((_CSTR, seg.name, None, 0))
        elif isinstance(seg, _Ints):
            enc.append((_INTS, seg.getter, seg.packer.pack))
            dec.append((_INTS, ",".join(seg.names), seg.packer.unpack_from, seg.packer.size))
        else:
            enc.append((_SM, attrgetter(seg.name), None))
            dec.append((_SM, seg.name, None, 0))
    return tuple(enc), tuple(dec)


@dataclass(slots=True)
class Pdu:
    """Base of every PDU: header fields and the raw TLVs."""

    command_id: ClassVar[int]
    _layout: ClassVar[tuple[_Segment, ...]] = ()
    _encode_ops: ClassVar[tuple[_EncodeOp, ...]] = ()
    _decode_ops: ClassVar[tuple[_DecodeOp, ...]] = ()
    _body_field_count: ClassVar[int] = 0
    #: Whether the PDU may carry TLVs after its mandatory body.
    has_tlvs: ClassVar[bool] = False

    sequence: int = 0
    status: int = 0
    tlvs: list[tuple[int, bytes]] = field(default_factory=list)

    # -- TLV access ----------------------------------------------------------
    def tlv(self, tag: int) -> bytes | None:
        """Raw value of the first TLV with ``tag``."""
        for t, v in self.tlvs:
            if t == tag:
                return v
        return None

    def tlv_int(self, tag: int) -> int | None:
        """Integer TLV as a number, whatever length the peer chose."""
        raw = self.tlv(tag)
        if raw is None or not raw:
            return None
        return int.from_bytes(raw, "big")

    def tlv_str(self, tag: int) -> str | None:
        """C-string TLV up to its NUL (or its end, for peers that leave the NUL out)."""
        raw = self.tlv(tag)
        if raw is None:
            return None
        end = raw.find(0)
        return (raw if end < 0 else raw[:end]).decode("latin-1")

    def set_tlv(self, tag: int, value: int | str | bytes) -> None:
        """Set (replace) a TLV, encoding ``value`` by the tag's SMPP 3.4 type."""
        raw = tlv_value(tag, value)
        self.tlvs = [(t, v) for t, v in self.tlvs if t != tag]
        self.tlvs.append((tag, raw))

    @property
    def name(self) -> str:
        return command_name(self.command_id)

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    def response(self, status: int = Status.ESME_ROK, **fields: Any) -> Pdu:
        """The matching ``*_resp`` PDU with this PDU's sequence number."""
        cls = PDU_CLASSES.get(self.command_id | RESPONSE_BIT)
        if cls is None or self.command_id & RESPONSE_BIT:
            # outbind and alert_notification are never answered; responses are not either.
            raise ValueError(f"{self.name} has no response PDU")
        return cls(sequence=self.sequence, status=status, **fields)

    def encode(self) -> bytes:
        return encode(self)


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


# --------------------------------------------------------------------------- PDUs


@dataclass(slots=True)
class _Bind(Pdu):
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def __repr__(self) -> str:  # passwords never reach a log line through repr()
        return (
            f"{type(self).__name__}(sequence={self.sequence}, system_id={self.system_id!r}, "
            f"password='***', system_type={self.system_type!r})"
        )


@dataclass(slots=True, repr=False)
class BindTransmitter(_Bind):
    command_id = CommandId.BIND_TRANSMITTER


@dataclass(slots=True, repr=False)
class BindReceiver(_Bind):
    command_id = CommandId.BIND_RECEIVER


@dataclass(slots=True, repr=False)
class BindTransceiver(_Bind):
    command_id = CommandId.BIND_TRANSCEIVER


@dataclass(slots=True)
class _BindResp(Pdu):
    has_tlvs = True
    system_id: str = ""


@dataclass(slots=True)
class BindTransmitterResp(_BindResp):
    command_id = CommandId.BIND_TRANSMITTER_RESP


@dataclass(slots=True)
class BindReceiverResp(_BindResp):
    command_id = CommandId.BIND_RECEIVER_RESP


@dataclass(slots=True)
class BindTransceiverResp(_BindResp):
    command_id = CommandId.BIND_TRANSCEIVER_RESP


@dataclass(slots=True)
class Outbind(Pdu):
    command_id = CommandId.OUTBIND
    system_id: str = ""
    password: str = ""

    def __repr__(self) -> str:
        return f"Outbind(sequence={self.sequence}, system_id={self.system_id!r}, password='***')"


@dataclass(slots=True)
class Unbind(Pdu):
    command_id = CommandId.UNBIND


@dataclass(slots=True)
class UnbindResp(Pdu):
    command_id = CommandId.UNBIND_RESP


@dataclass(slots=True)
class EnquireLink(Pdu):
    command_id = CommandId.ENQUIRE_LINK


@dataclass(slots=True)
class EnquireLinkResp(Pdu):
    command_id = CommandId.ENQUIRE_LINK_RESP


@dataclass(slots=True)
class GenericNack(Pdu):
    command_id = CommandId.GENERIC_NACK


@dataclass(slots=True)
class _ShortMessagePdu(Pdu):
    """submit_sm and deliver_sm share one body layout (SMPP 3.4 sections 4.4.1 and 4.6.1)."""

    has_tlvs = True
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


@dataclass(slots=True)
class SubmitSm(_ShortMessagePdu):
    command_id = CommandId.SUBMIT_SM


@dataclass(slots=True)
class DeliverSm(_ShortMessagePdu):
    command_id = CommandId.DELIVER_SM


@dataclass(slots=True)
class _MessageIdResp(Pdu):
    has_tlvs = True
    message_id: str = ""


@dataclass(slots=True)
class SubmitSmResp(_MessageIdResp):
    command_id = CommandId.SUBMIT_SM_RESP


@dataclass(slots=True)
class DeliverSmResp(_MessageIdResp):
    command_id = CommandId.DELIVER_SM_RESP


@dataclass(slots=True)
class DataSmResp(_MessageIdResp):
    command_id = CommandId.DATA_SM_RESP


@dataclass(slots=True)
class DataSm(Pdu):
    command_id = CommandId.DATA_SM
    has_tlvs = True
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0


@dataclass(slots=True)
class QuerySm(Pdu):
    command_id = CommandId.QUERY_SM
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""


@dataclass(slots=True)
class QuerySmResp(Pdu):
    command_id = CommandId.QUERY_SM_RESP
    message_id: str = ""
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0


@dataclass(slots=True)
class AlertNotification(Pdu):
    command_id = CommandId.ALERT_NOTIFICATION
    has_tlvs = True
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    esme_addr_ton: int = 0
    esme_addr_npi: int = 0
    esme_addr: str = ""


PDU_CLASSES: dict[int, type[Pdu]] = {}
for _cls in (
    BindTransmitter,
    BindReceiver,
    BindTransceiver,
    BindTransmitterResp,
    BindReceiverResp,
    BindTransceiverResp,
    Outbind,
    Unbind,
    UnbindResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    SubmitSm,
    SubmitSmResp,
    DeliverSm,
    DeliverSmResp,
    DataSm,
    DataSmResp,
    QuerySm,
    QuerySmResp,
    AlertNotification,
):
    _cls._layout = _compile_layout(_cls)
    _cls._encode_ops, _cls._decode_ops = _compile_ops(_cls._layout)
    _cls._body_field_count = sum(
        1 for f in dataclasses.fields(_cls) if f.name not in _HEADER_FIELDS
    )
    PDU_CLASSES[_cls.command_id] = _cls

BIND_CLASSES: dict[str, type[_Bind]] = {
    "transmitter": BindTransmitter,
    "receiver": BindReceiver,
    "transceiver": BindTransceiver,
}


# --------------------------------------------------------------------------- encode


def encode(pdu: Pdu) -> bytes:
    """Wire bytes of ``pdu``; raises ValueError naming the field that cannot be encoded."""
    parts: list[bytes] = []
    append = parts.append
    try:
        for kind, get, pack in pdu._encode_ops:
            if kind == _CSTR:
                raw = get(pdu).encode("latin-1")
                if 0 in raw:
                    # An embedded NUL would end the C-string early and shift every later
                    # field: the peer would read a different PDU than the one we meant.
                    raise ValueError("NUL in C-Octet String")
                append(raw + b"\x00")
            elif kind == _INTS:
                append(pack(*get(pdu)))  # type: ignore[misc]
            else:
                sm = get(pdu)
                append(bytes((len(sm),)))
                append(sm)
        for tag, value in pdu.tlvs:
            append(TLV_HEADER.pack(tag, len(value)))
            append(value)
        body = b"".join(parts)
        return HEADER.pack(HEADER_SIZE + len(body), pdu.command_id, pdu.status, pdu.sequence) + body
    except (UnicodeEncodeError, struct.error, ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"{pdu.name}: {_explain_encode_error(pdu)}") from exc


def _explain_encode_error(pdu: Pdu) -> str:
    """Slow path: find which field made encode() fail, for a message a person can act on."""
    for name in ("sequence", "status"):
        value = getattr(pdu, name)
        if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            return f"{name}: {value!r} is not an unsigned 32-bit integer"
    for seg in pdu._layout:
        if isinstance(seg, _Cstr):
            value = getattr(pdu, seg.name)
            if not isinstance(value, str):
                return f"{seg.name}: expected str, got {type(value).__name__}"
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:
                return f"{seg.name}: {value!r} is not an ASCII/Latin-1 C-Octet String"
            if "\x00" in value:
                return f"{seg.name}: {value!r} contains NUL, which would end the C-Octet String"
        elif isinstance(seg, _Ints):
            for name in seg.names:
                value = getattr(pdu, name)
                if not isinstance(value, int) or not 0 <= value <= 255:
                    return f"{name}: {value!r} is not an integer 0..255"
        else:
            sm = getattr(pdu, seg.name)
            if not isinstance(sm, bytes | bytearray | memoryview):
                return f"{seg.name}: expected bytes, got {type(sm).__name__}"
            if len(sm) > 255:
                return f"{seg.name}: {len(sm)} octets, at most 255 (use message_payload)"
    tlvs: list[Any] = pdu.tlvs  # typed as pairs, but this path exists for what is not
    for item in tlvs:
        try:
            tag, value = item
        except (TypeError, ValueError):
            return f"tlvs: {item!r} is not a (tag, value) pair"
        if not isinstance(tag, int) or not 0 <= tag <= 0xFFFF:
            return f"TLV tag {tag!r} is not an unsigned 16-bit integer"
        if not isinstance(value, bytes | bytearray | memoryview):
            return f"TLV 0x{tag:04x}: value must be bytes, got {type(value).__name__}"
        if len(value) > 0xFFFF:
            return f"TLV 0x{tag:04x}: {len(value)} octets, at most 65535"
    return "cannot encode"


# --------------------------------------------------------------------------- decode


def decode(frame: bytes | bytearray | memoryview, max_length: int = DEFAULT_MAX_PDU_LENGTH) -> Pdu:
    """Decode one whole PDU (header included).

    Raises :class:`FrameError` when the length is impossible, :class:`UnknownCommandError`
    for an unknown command id and :class:`PduError` for a body that does not parse.
    """
    data = bytes(frame)
    size = len(data)
    if size < HEADER_SIZE:
        raise FrameError(f"{size} octets is shorter than the 16-octet header")
    length, command_id, status, sequence = HEADER.unpack_from(data)
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
    cls = PDU_CLASSES.get(command_id)
    if cls is None:
        raise UnknownCommandError(
            "unknown command_id",
            command_id=command_id,
            sequence=sequence,
            status=Status.ESME_RINVCMDID,
        )
    if length == HEADER_SIZE and cls._body_field_count:
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
        for kind, name, unpack_from, width in cls._decode_ops:
            if kind == _CSTR:
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
            elif kind == _INTS:
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
        tlvs = _decode_tlvs(data, pos, command_id, sequence)
    return cls(sequence, status, tlvs, *values)


def _decode_tlvs(data: bytes, pos: int, command_id: int, sequence: int) -> list[tuple[int, bytes]]:
    size = len(data)
    tlvs: list[tuple[int, bytes]] = []
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


def peek_header(frame: bytes | bytearray) -> tuple[int, int, int, int] | None:
    """(length, command_id, status, sequence) when at least a header is there."""
    if len(frame) < HEADER_SIZE:
        return None
    length, command_id, status, sequence = HEADER.unpack_from(frame)
    return length, command_id, status, sequence


def generic_nack(sequence: int, status: int) -> GenericNack:
    return GenericNack(sequence=sequence, status=status)


# --------------------------------------------------------------------------- framing


class FrameReader:
    """Incremental framer: feed it whatever the socket gave, get whole PDUs back.

    Copes with PDUs split across reads and many PDUs in one read; refuses absurd
    command_length values before buffering them, so a hostile peer cannot make it hold
    more than ``max_length`` octets.
    """

    __slots__ = ("_buf", "max_length")

    def __init__(self, max_length: int = DEFAULT_MAX_PDU_LENGTH) -> None:
        self._buf = bytearray()
        self.max_length = max_length

    @property
    def buffered(self) -> int:
        """Octets of an incomplete PDU held back."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        size = len(buf)
        while size - pos >= 4:
            length = int.from_bytes(buf[pos : pos + 4], "big")
            if length < HEADER_SIZE or length > self.max_length:
                header = peek_header(buf[pos : pos + HEADER_SIZE])
                command_id = header[1] if header else None
                sequence = header[3] if header else None
                buf.clear()
                raise FrameError(
                    f"command_length {length} outside 16..{self.max_length}",
                    command_id=command_id,
                    sequence=sequence,
                    status=Status.ESME_RINVCMDLEN,
                    frames=frames,
                )
            if size - pos < length:
                break
            frames.append(bytes(buf[pos : pos + length]))
            pos += length
        if pos:
            del buf[:pos]
        return frames


def decode_many(data: bytes) -> list[Pdu]:
    """Decode a byte string holding whole PDUs back to back (tests, logs)."""
    reader = FrameReader()
    frames = reader.feed(data)
    if reader.buffered:
        raise FrameError(f"{reader.buffered} trailing octets after the last PDU")
    return [decode(f) for f in frames]
