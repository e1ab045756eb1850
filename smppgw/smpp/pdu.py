"""The PDUs of SMPP 3.4 as slotted dataclasses: their mandatory parameters in wire order.

A field's Python type is its SMPP type (:mod:`smppgw.smpp.fields`): ``str`` a C-Octet
String, ``int`` a 1-octet integer, ``bytes`` the ``short_message``. Each class's layout is
compiled once at import, for :mod:`smppgw.smpp.codec` (``encode`` / ``decode``). TLVs are
raw ``(tag, value)`` pairs in wire order (:mod:`smppgw.smpp.tlv`); typed access goes through
:meth:`Pdu.tlv_int`, :meth:`Pdu.tlv_str` and :meth:`Pdu.set_tlv`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from smppgw.smpp import fields as fieldtypes
from smppgw.smpp import tlv as tlvs_
from smppgw.smpp.constants import RESPONSE_BIT, CommandId, Status, command_name

#: Fields every PDU has that are not part of its body.
HEADER_FIELDS = frozenset({"sequence", "status", "tlvs"})


@dataclass(slots=True)
class Pdu:
    """Base of every PDU: header fields and the raw TLVs."""

    command_id: ClassVar[int]
    layout: ClassVar[tuple[fieldtypes.Field, ...]] = ()
    encode_ops: ClassVar[tuple[fieldtypes.EncodeOp, ...]] = ()
    decode_ops: ClassVar[tuple[fieldtypes.DecodeOp, ...]] = ()
    body_field_count: ClassVar[int] = 0
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
        return tlvs_.as_int(self.tlv(tag))

    def tlv_str(self, tag: int) -> str | None:
        """C-string TLV up to its NUL (or its end, for peers that leave the NUL out)."""
        return tlvs_.as_str(self.tlv(tag))

    def set_tlv(self, tag: int, value: int | str | bytes) -> None:
        """Set (replace) a TLV, encoding ``value`` by the tag's SMPP 3.4 type."""
        raw = tlvs_.tlv_value(tag, value)
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
    _cls.layout = fieldtypes.layout(_cls, HEADER_FIELDS)
    _cls.encode_ops, _cls.decode_ops = fieldtypes.hot_ops(_cls.layout)
    _cls.body_field_count = sum(1 for f in dataclasses.fields(_cls) if f.name not in HEADER_FIELDS)
    PDU_CLASSES[_cls.command_id] = _cls

BIND_CLASSES: dict[str, type[_Bind]] = {
    "transmitter": BindTransmitter,
    "receiver": BindReceiver,
    "transceiver": BindTransceiver,
}


def generic_nack(sequence: int, status: int) -> GenericNack:
    return GenericNack(sequence=sequence, status=status)
