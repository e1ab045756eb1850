"""The PDU codec against the SMPP 3.4 wire format, its strictness and its leniency.

Known vectors are built here byte by byte from the specification's layouts (never with
the codec under test), so a symmetric bug in encode and decode cannot hide behind a round
trip. Property tests then cover every PDU class with random field values and random or
mutated input.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import subprocess
import sys
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from smppgw.smpp.codec import decode, decode_many, encode
from smppgw.smpp.constants import (
    TLV_CSTRING,
    TLV_INT_SIZE,
    MessageState,
    Status,
    Tag,
    command_name,
    status_name,
)
from smppgw.smpp.errors import FrameError, PduError, UnknownCommandError
from smppgw.smpp.framing import DEFAULT_MAX_PDU_LENGTH, peek_header
from smppgw.smpp.pdu import (
    BIND_CLASSES,
    PDU_CLASSES,
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    generic_nack,
)
from smppgw.smpp.tlv import tlv_value

# --------------------------------------------------------------------------- helpers


def frame(command_id: int, body: bytes = b"", *, status: int = 0, sequence: int = 1) -> bytes:
    """A PDU assembled by hand: the header the spec describes, then ``body``."""
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body


def cstr(text: str) -> bytes:
    return text.encode("latin-1") + b"\x00"


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


def reframe(data: bytes) -> bytes:
    """Rewrite command_length to the real size, so a mutation reaches the body parser."""
    return struct.pack(">I", len(data)) + data[4:] if len(data) >= 4 else data


# SMPP 3.4 section 5.3.2: every optional parameter, its tag and its value type
# ("int" + octets, "cstr", or "octets"). An independent copy of the spec, not of the
# constants module, so a typo there shows up here.
SPEC_TLVS: dict[str, tuple[int, str, int]] = {
    "dest_addr_subunit": (0x0005, "int", 1),
    "dest_network_type": (0x0006, "int", 1),
    "dest_bearer_type": (0x0007, "int", 1),
    "dest_telematics_id": (0x0008, "int", 2),
    "source_addr_subunit": (0x000D, "int", 1),
    "source_network_type": (0x000E, "int", 1),
    "source_bearer_type": (0x000F, "int", 1),
    "source_telematics_id": (0x0010, "int", 1),
    "qos_time_to_live": (0x0017, "int", 4),
    "payload_type": (0x0019, "int", 1),
    "additional_status_info_text": (0x001D, "cstr", 0),
    "receipted_message_id": (0x001E, "cstr", 0),
    "ms_msg_wait_facilities": (0x0030, "int", 1),
    "privacy_indicator": (0x0201, "int", 1),
    "source_subaddress": (0x0202, "octets", 0),
    "dest_subaddress": (0x0203, "octets", 0),
    "user_message_reference": (0x0204, "int", 2),
    "user_response_code": (0x0205, "int", 1),
    "source_port": (0x020A, "int", 2),
    "destination_port": (0x020B, "int", 2),
    "sar_msg_ref_num": (0x020C, "int", 2),
    "language_indicator": (0x020D, "int", 1),
    "sar_total_segments": (0x020E, "int", 1),
    "sar_segment_seqnum": (0x020F, "int", 1),
    "sc_interface_version": (0x0210, "int", 1),
    "callback_num_pres_ind": (0x0302, "int", 1),
    "callback_num_atag": (0x0303, "octets", 0),
    "number_of_messages": (0x0304, "int", 1),
    "callback_num": (0x0381, "octets", 0),
    "dpf_result": (0x0420, "int", 1),
    "set_dpf": (0x0421, "int", 1),
    "ms_availability_status": (0x0422, "int", 1),
    "network_error_code": (0x0423, "octets", 3),
    "message_payload": (0x0424, "octets", 0),
    "delivery_failure_reason": (0x0425, "int", 1),
    "more_messages_to_send": (0x0426, "int", 1),
    "message_state": (0x0427, "int", 1),
    "ussd_service_op": (0x0501, "int", 1),
    "display_time": (0x1201, "int", 1),
    "sms_signal": (0x1203, "int", 2),
    "ms_validity": (0x1204, "int", 1),
    "alert_on_message_delivery": (0x130C, "octets", 0),
    "its_reply_type": (0x1380, "int", 1),
    "its_session_info": (0x1383, "octets", 2),
}

# The PDUs the issue lists, by SMPP name, with the class that must carry each.
EXPECTED_CLASSES: dict[str, type[Pdu]] = {
    "bind_transmitter": BindTransmitter,
    "bind_transmitter_resp": BindTransmitterResp,
    "bind_receiver": BindReceiver,
    "bind_receiver_resp": BindReceiverResp,
    "bind_transceiver": BindTransceiver,
    "bind_transceiver_resp": BindTransceiverResp,
    "outbind": Outbind,
    "unbind": Unbind,
    "unbind_resp": UnbindResp,
    "enquire_link": EnquireLink,
    "enquire_link_resp": EnquireLinkResp,
    "generic_nack": GenericNack,
    "submit_sm": SubmitSm,
    "submit_sm_resp": SubmitSmResp,
    "deliver_sm": DeliverSm,
    "deliver_sm_resp": DeliverSmResp,
    "data_sm": DataSm,
    "data_sm_resp": DataSmResp,
    "query_sm": QuerySm,
    "query_sm_resp": QuerySmResp,
    "alert_notification": AlertNotification,
}

# --------------------------------------------------------------------------- catalogue


def test_every_pdu_of_the_issue_has_a_class_under_its_command_id() -> None:
    assert {command_name(cid): cls for cid, cls in PDU_CLASSES.items()} == EXPECTED_CLASSES
    for cls in EXPECTED_CLASSES.values():
        assert PDU_CLASSES[cls.command_id] is cls
        assert cls().name == command_name(cls.command_id)
        assert cls().is_response == bool(cls.command_id & 0x80000000)
    assert {
        "transmitter": BindTransmitter,
        "receiver": BindReceiver,
        "transceiver": BindTransceiver,
    } == BIND_CLASSES


def test_every_smpp34_tlv_is_named_with_its_tag_and_type() -> None:
    assert {t.name.lower(): int(t) for t in Tag} == {n: v[0] for n, v in SPEC_TLVS.items()}
    for name, (tag, kind, size) in SPEC_TLVS.items():
        if kind == "int":
            assert TLV_INT_SIZE.get(tag) == size, name
        else:
            assert tag not in TLV_INT_SIZE, name
        assert (tag in TLV_CSTRING) == (kind == "cstr"), name


def test_status_and_command_names() -> None:
    assert status_name(0x58) == "ESME_RTHROTTLED"
    assert status_name(0x401) == "VENDOR_SPECIFIC"
    assert status_name(0x12345) == "UNKNOWN"
    assert command_name(0x80000004) == "submit_sm_resp"
    assert command_name(0x00000007) == "0x00000007"


# --------------------------------------------------------------------------- known vectors

ADDR_SUBMIT = (
    cstr("")  # service_type
    + bytes((5, 0))
    + cstr("SHOPVN")
    + bytes((1, 1))
    + cstr("84912345678")
    + bytes((0x40, 0, 1))  # esm_class, protocol_id, priority_flag
    + cstr("")  # schedule_delivery_time
    + cstr("000001000000000R")
    + bytes((1, 0, 8, 0))  # registered_delivery, replace_if_present, data_coding, sm_default
)

VECTORS: list[tuple[bytes, Pdu]] = [
    (
        frame(
            0x00000002,
            cstr("shopvn") + cstr("s3cret") + cstr("SMPP") + bytes((0x34, 5, 0)) + cstr(""),
            sequence=1,
        ),
        BindTransmitter(
            sequence=1, system_id="shopvn", password="s3cret", system_type="SMPP", addr_ton=5
        ),
    ),
    (
        frame(0x00000001, cstr("a") + cstr("b") + cstr("") + bytes((0x34, 1, 1)) + cstr("^849")),
        BindReceiver(
            sequence=1, system_id="a", password="b", addr_ton=1, addr_npi=1, address_range="^849"
        ),
    ),
    (
        frame(0x00000009, cstr("x") + cstr("") + cstr("") + bytes((0x33, 0, 0)) + cstr("")),
        BindTransceiver(sequence=1, system_id="x", interface_version=0x33),
    ),
    (
        frame(0x80000009, cstr("SMSC") + tlv(0x0210, b"\x34"), sequence=9),
        BindTransceiverResp(sequence=9, system_id="SMSC", tlvs=[(Tag.SC_INTERFACE_VERSION, b"4")]),
    ),
    (
        frame(0x80000002, cstr("SMSC"), sequence=2),
        BindTransmitterResp(sequence=2, system_id="SMSC"),
    ),
    (
        frame(0x80000001, cstr(""), status=0x0E, sequence=3),
        BindReceiverResp(sequence=3, status=Status.ESME_RINVPASWD),
    ),
    (
        frame(0x0000000B, cstr("smsc") + cstr("pw")),
        Outbind(sequence=1, system_id="smsc", password="pw"),
    ),
    (frame(0x00000006, sequence=77), Unbind(sequence=77)),
    (frame(0x80000006, sequence=77), UnbindResp(sequence=77)),
    (frame(0x00000015, sequence=0x7FFFFFFF), EnquireLink(sequence=0x7FFFFFFF)),
    (frame(0x80000015, sequence=5), EnquireLinkResp(sequence=5)),
    (frame(0x80000000, status=0x03, sequence=4), GenericNack(sequence=4, status=3)),
    (
        frame(
            0x00000004,
            ADDR_SUBMIT
            + bytes((4,))
            + b"\x05\x00\x03\x2a\x02\x01"[:4]
            + tlv(0x0204, b"\x07\xc0")
            + tlv(0x1501, b"vendor"),
            sequence=10,
        ),
        SubmitSm(
            sequence=10,
            source_addr_ton=5,
            source_addr="SHOPVN",
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr="84912345678",
            esm_class=0x40,
            priority_flag=1,
            validity_period="000001000000000R",
            registered_delivery=1,
            data_coding=8,
            short_message=b"\x05\x00\x03\x2a",
            tlvs=[(0x0204, b"\x07\xc0"), (0x1501, b"vendor")],
        ),
    ),
    (
        frame(0x80000004, cstr("6A3F1C0B"), sequence=10),
        SubmitSmResp(sequence=10, message_id="6A3F1C0B"),
    ),
    (
        frame(
            0x00000005,
            cstr("")
            + bytes((1, 1))
            + cstr("84912345678")
            + bytes((5, 0))
            + cstr("SHOPVN")
            + bytes((0x04, 0, 0))
            + cstr("")
            + cstr("")
            + bytes((0, 0, 0, 0))
            + bytes((12,))
            + b"id:6A3F1C0B "
            + tlv(0x001E, b"6A3F1C0B\x00")
            + tlv(0x0427, b"\x02")
            + tlv(0x0423, b"\x03\x00\x00"),
            sequence=11,
        ),
        DeliverSm(
            sequence=11,
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="84912345678",
            dest_addr_ton=5,
            destination_addr="SHOPVN",
            esm_class=0x04,
            short_message=b"id:6A3F1C0B ",
            tlvs=[
                (Tag.RECEIPTED_MESSAGE_ID, b"6A3F1C0B\x00"),
                (Tag.MESSAGE_STATE, b"\x02"),
                (Tag.NETWORK_ERROR_CODE, b"\x03\x00\x00"),
            ],
        ),
    ),
    (frame(0x80000005, cstr(""), sequence=11), DeliverSmResp(sequence=11)),
    (
        frame(
            0x00000103,
            cstr("WAP")
            + bytes((1, 1))
            + cstr("849")
            + bytes((5, 0))
            + cstr("SHOP")
            + bytes((0, 1, 8))
            + tlv(0x0424, "chào".encode("utf-16-be")),
        ),
        DataSm(
            sequence=1,
            service_type="WAP",
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="849",
            dest_addr_ton=5,
            destination_addr="SHOP",
            registered_delivery=1,
            data_coding=8,
            tlvs=[(Tag.MESSAGE_PAYLOAD, "chào".encode("utf-16-be"))],
        ),
    ),
    (
        frame(0x80000103, cstr("42") + tlv(0x0425, b"\x01")),
        DataSmResp(sequence=1, message_id="42", tlvs=[(Tag.DELIVERY_FAILURE_REASON, b"\x01")]),
    ),
    (
        frame(0x00000003, cstr("42") + bytes((5, 0)) + cstr("SHOPVN")),
        QuerySm(sequence=1, message_id="42", source_addr_ton=5, source_addr="SHOPVN"),
    ),
    (
        frame(0x80000003, cstr("42") + cstr("240601123000000+") + bytes((2, 0))),
        QuerySmResp(
            sequence=1,
            message_id="42",
            final_date="240601123000000+",
            message_state=MessageState.DELIVERED,
        ),
    ),
    (
        frame(
            0x00000102,
            bytes((1, 1)) + cstr("849") + bytes((5, 0)) + cstr("SHOP") + tlv(0x0422, b"\x00"),
        ),
        AlertNotification(
            sequence=1,
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="849",
            esme_addr_ton=5,
            esme_addr="SHOP",
            tlvs=[(Tag.MS_AVAILABILITY_STATUS, b"\x00")],
        ),
    ),
]


def test_vectors_cover_every_pdu_class() -> None:
    assert {type(p) for _, p in VECTORS} == set(PDU_CLASSES.values())


@pytest.mark.parametrize(("wire", "pdu"), VECTORS, ids=[p.name for _, p in VECTORS])
def test_known_vector_decodes_and_encodes(wire: bytes, pdu: Pdu) -> None:
    assert decode(wire) == pdu
    assert encode(pdu) == wire


def test_decode_accepts_bytearray_and_memoryview() -> None:
    wire, pdu = next((w, p) for w, p in VECTORS if isinstance(p, SubmitSm))
    assert decode(bytearray(wire)) == pdu
    assert decode(memoryview(wire)) == pdu
    assert all(type(v) is bytes for _, v in decode(bytearray(wire)).tlvs)


def test_decode_many_and_peek_header() -> None:
    stream = b"".join(w for w, _ in VECTORS)
    assert decode_many(stream) == [p for _, p in VECTORS]
    with pytest.raises(FrameError):
        decode_many(stream + b"\x00\x00")
    assert peek_header(VECTORS[0][0]) == (len(VECTORS[0][0]), 2, 0, 1)
    assert peek_header(b"\x00" * 15) is None


# --------------------------------------------------------------------------- TLV access


def test_unknown_and_vendor_tlvs_survive_byte_for_byte_in_wire_order() -> None:
    body = (
        ADDR_SUBMIT
        + bytes((2,))
        + b"hi"
        + tlv(0x1400, b"")  # empty vendor TLV
        + tlv(0x0204, b"\x00\x01")
        + tlv(0xFFFF, bytes(range(256)))
        + tlv(0x1400, b"again")  # duplicate tag, kept as sent
        + tlv(0x4000, b"\x00" * 3)
    )
    wire = frame(0x00000004, body, sequence=3)
    pdu = decode(wire)
    assert pdu.tlvs == [
        (0x1400, b""),
        (0x0204, b"\x00\x01"),
        (0xFFFF, bytes(range(256))),
        (0x1400, b"again"),
        (0x4000, b"\x00\x00\x00"),
    ]
    assert pdu.tlv(0x1400) == b""  # the first one
    assert encode(pdu) == wire


@pytest.mark.parametrize("name", sorted(SPEC_TLVS))
def test_every_tlv_by_name_sets_and_reads_back(name: str) -> None:
    tag, kind, size = SPEC_TLVS[name]
    pdu = DataSm()
    if kind == "int":
        value = (1 << (8 * size)) - 2
        pdu.set_tlv(Tag[name.upper()], value)
        assert pdu.tlv(tag) == value.to_bytes(size, "big")
        assert pdu.tlv_int(tag) == value
    elif kind == "cstr":
        pdu.set_tlv(Tag[name.upper()], "6A3F1C0B")
        assert pdu.tlv(tag) == b"6A3F1C0B\x00"
        assert pdu.tlv_str(tag) == "6A3F1C0B"
    else:
        raw = bytes(range(size or 5))
        pdu.set_tlv(Tag[name.upper()], raw)
        assert pdu.tlv(tag) == raw
    assert decode(encode(pdu)) == pdu


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        (Tag.MESSAGE_STATE, 256),
        (Tag.SAR_MSG_REF_NUM, 1 << 16),
        (Tag.SOURCE_PORT, -1),
        (0x1400, 300),
    ],
)
def test_set_tlv_refuses_an_integer_that_does_not_fit(tag: int, value: int) -> None:
    pdu = SubmitSm()
    with pytest.raises(ValueError, match=f"0x{tag:04x}"):
        pdu.set_tlv(tag, value)
    assert pdu.tlvs == []


def test_set_tlv_replaces_every_earlier_value_of_the_tag() -> None:
    pdu = SubmitSm(tlvs=[(0x0427, b"\x01"), (0x1400, b"v"), (0x0427, b"\x02")])
    pdu.set_tlv(Tag.MESSAGE_STATE, MessageState.REJECTED)
    assert pdu.tlvs == [(0x1400, b"v"), (0x0427, b"\x08")]
    assert pdu.tlv_int(Tag.MESSAGE_STATE) == MessageState.REJECTED


def test_tlv_accessors_on_absent_and_empty_values() -> None:
    pdu = DeliverSm(tlvs=[(Tag.MESSAGE_STATE, b"")])
    assert pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) is None
    assert pdu.tlv_str(Tag.RECEIPTED_MESSAGE_ID) is None
    assert pdu.tlv_int(Tag.SAR_MSG_REF_NUM) is None
    assert pdu.tlv_int(Tag.MESSAGE_STATE) is None  # present but empty: no number in it
    assert tlv_value(0x1400, b"raw") == b"raw"
    assert tlv_value(Tag.MESSAGE_PAYLOAD, "é") == b"\xe9"  # octet strings get no NUL


# --------------------------------------------------------------------------- leniency


def test_cstring_tlv_without_nul_is_read_whole() -> None:
    wire = frame(
        0x00000005,
        ADDR_SUBMIT + b"\x00" + tlv(0x001E, b"6A3F1C0B") + tlv(0x0427, b"\x02"),
    )
    pdu = decode(wire)
    assert pdu.tlv_str(Tag.RECEIPTED_MESSAGE_ID) == "6A3F1C0B"
    assert encode(pdu) == wire  # kept raw, re-sent as received


@pytest.mark.parametrize(
    ("raw", "number"),
    [(b"\x00\x02", 2), (b"\x00\x00\x00\x05", 5), (b"\x01\x02\x03", 0x010203)],
)
def test_integer_tlv_of_unexpected_length_is_kept_raw(raw: bytes, number: int) -> None:
    wire = frame(0x00000005, ADDR_SUBMIT + b"\x00" + tlv(0x0427, raw))
    pdu = decode(wire)
    assert pdu.tlv(Tag.MESSAGE_STATE) == raw
    assert pdu.tlv_int(Tag.MESSAGE_STATE) == number
    assert encode(pdu) == wire


RESPONSES_WITH_BODY = [
    SubmitSmResp,
    DeliverSmResp,
    DataSmResp,
    QuerySmResp,
    BindTransmitterResp,
    BindReceiverResp,
    BindTransceiverResp,
]


@pytest.mark.parametrize("cls", RESPONSES_WITH_BODY, ids=lambda c: c.__name__)
def test_error_response_without_body_is_accepted(cls: type[Pdu]) -> None:
    # e.g. submit_sm_resp ESME_RSUBMITFAIL with command_length 16: SMPP 3.4 4.4.2 says the
    # body "is not returned if the command_status field contains a non-zero value".
    pdu = decode(frame(cls.command_id, status=0x45, sequence=99))
    assert type(pdu) is cls
    assert (pdu.sequence, pdu.status, pdu.tlvs) == (99, 0x45, [])
    assert pdu == cls(sequence=99, status=0x45)


def test_ok_response_without_body_is_accepted_too() -> None:
    assert decode(frame(0x80000004, sequence=5)) == SubmitSmResp(sequence=5)


def test_response_cstring_without_nul_keeps_what_is_there() -> None:
    assert decode(frame(0x80000004, b"6A3F1C0B")) == SubmitSmResp(sequence=1, message_id="6A3F1C0B")


def test_high_octets_in_cstrings_decode_as_latin1_not_utf8_errors() -> None:
    pdu = decode(frame(0x80000004, b"\xff\xfe\x80\x00"))
    assert isinstance(pdu, SubmitSmResp)
    assert pdu.message_id == "\xff\xfe\x80"


# --------------------------------------------------------------------------- strictness


@pytest.mark.parametrize("length", [0, 1, 15])
def test_command_length_below_16_is_a_frame_error(length: int) -> None:
    data = struct.pack(">IIII", length, 0x15, 0, 7)
    with pytest.raises(FrameError) as info:
        decode(data)
    assert info.value.command_id == 0x15
    assert info.value.sequence == 7
    assert info.value.status == Status.ESME_RINVCMDLEN


def test_command_length_above_max_is_a_frame_error() -> None:
    big = frame(0x00000004, ADDR_SUBMIT + b"\x00" + tlv(0x0424, b"x" * 65000))
    assert len(big) <= DEFAULT_MAX_PDU_LENGTH
    decode(big)
    too_big = frame(0x00000004, ADDR_SUBMIT + b"\x00" + tlv(0x0424, b"x" * 65535))
    assert len(too_big) > DEFAULT_MAX_PDU_LENGTH
    with pytest.raises(FrameError, match=r"outside 16\.\.65536"):
        decode(too_big)
    small = frame(0x00000004, ADDR_SUBMIT + b"\x00")
    assert decode(small, max_length=len(small)) is not None
    with pytest.raises(FrameError):
        decode(small, max_length=len(small) - 1)


def test_frame_shorter_than_header_and_length_mismatch_are_frame_errors() -> None:
    with pytest.raises(FrameError):
        decode(b"\x00\x00\x00\x10\x00")
    wire = frame(0x15)
    with pytest.raises(FrameError, match="17 octets"):
        decode(wire + b"\x00")
    with pytest.raises(FrameError):
        decode(struct.pack(">IIII", 20, 0x15, 0, 1))


def test_unknown_command_id_is_its_own_error_with_rinvcmdid() -> None:
    with pytest.raises(UnknownCommandError) as info:
        decode(frame(0x00000021, b"\x00", sequence=8))  # submit_multi: not supported
    err = info.value
    assert isinstance(err, PduError)
    assert (err.command_id, err.sequence, err.status) == (0x21, 8, Status.ESME_RINVCMDID)


def _submit_body(sm: bytes, sm_length: int | None = None) -> bytes:
    return ADDR_SUBMIT + bytes((len(sm) if sm_length is None else sm_length,)) + sm


OVERRUNS: list[tuple[str, bytes, str]] = [
    ("sm_length past the end", frame(4, _submit_body(b"hi", 3), sequence=21), "sm_length"),
    ("sm_length missing", frame(4, ADDR_SUBMIT, sequence=21), "body ends"),
    (
        "TLV length past the end",
        frame(4, _submit_body(b"hi") + struct.pack(">HH", 0x0424, 10) + b"abc", sequence=21),
        "overruns",
    ),
    (
        "truncated TLV header",
        frame(4, _submit_body(b"hi") + b"\x04\x24\x00", sequence=21),
        "truncated TLV",
    ),
    (
        "missing NUL in destination_addr",
        frame(4, cstr("") + bytes((5, 0)) + cstr("SHOP") + bytes((1, 1)) + b"849123", sequence=21),
        "destination_addr",
    ),
    (
        "missing NUL in bind password",
        frame(2, cstr("shopvn") + b"s3cret", sequence=21),
        "password",
    ),
    ("request without body", frame(4, sequence=21), "body missing"),
    ("int run cut short", frame(3, cstr("42") + b"\x05", sequence=21), "body ends"),
    ("octets after a TLV-less body", frame(0x15, b"\x00", sequence=21), "unexpected"),
    (
        "octets after query_sm",
        frame(3, cstr("42") + bytes((5, 0)) + cstr("SHOP") + tlv(0x1400, b"x"), sequence=21),
        "unexpected",
    ),
]


@pytest.mark.parametrize(("case", "wire", "reason"), OVERRUNS, ids=[c for c, _, _ in OVERRUNS])
def test_body_overrun_is_a_pdu_error_with_id_sequence_and_reason(
    case: str, wire: bytes, reason: str
) -> None:
    with pytest.raises(PduError) as info:
        decode(wire)
    err = info.value
    assert not isinstance(err, FrameError)  # the stream is intact; only this PDU is bad
    assert err.command_id == struct.unpack_from(">I", wire, 4)[0]
    assert err.sequence == 21
    assert reason in err.reason
    assert err.status != Status.ESME_ROK
    assert command_name(err.command_id) in str(err) and "seq=21" in str(err)


def test_pdu_error_carries_fields_and_defaults() -> None:
    err = PduError("bad")
    assert (err.reason, err.command_id, err.sequence, err.status) == (
        "bad",
        None,
        None,
        Status.ESME_RSYSERR,
    )
    assert str(err) == "pdu: bad"


# --------------------------------------------------------------------------- encode errors


@pytest.mark.parametrize(
    ("pdu", "field"),
    [
        (SubmitSm(destination_addr="84 9\u0111"), "destination_addr"),
        (SubmitSm(source_addr="SHOP\x00VN"), "source_addr"),
        (SubmitSm(esm_class=256), "esm_class"),
        (SubmitSm(data_coding=-1), "data_coding"),
        (SubmitSm(short_message=b"x" * 256), "short_message"),
        (SubmitSm(short_message="text"), "short_message"),  # type: ignore[arg-type]
        (SubmitSmResp(message_id=42), "message_id"),  # type: ignore[arg-type]
        (SubmitSm(tlvs=[(0x0424, b"x" * 65536)]), "0x0424"),
        (SubmitSm(tlvs=[(0x10000, b"")]), "tag"),
        (SubmitSm(tlvs=[(0x0424, "text")]), "0x0424"),  # type: ignore[list-item]
        (EnquireLink(sequence=1 << 32), "sequence"),
        (EnquireLink(sequence=-1), "sequence"),
        (GenericNack(status=1 << 32), "status"),
    ],
)
def test_encode_refuses_what_cannot_go_on_the_wire_naming_the_field(pdu: Pdu, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        encode(pdu)


# --------------------------------------------------------------------------- API details


@pytest.mark.parametrize(
    "request_pdu",
    [cls(sequence=42) for cls in PDU_CLASSES.values() if not cls().is_response],
    ids=lambda p: p.name,
)
def test_response_matches_the_request(request_pdu: Pdu) -> None:
    if isinstance(request_pdu, Outbind | AlertNotification):
        with pytest.raises(ValueError, match="no response"):
            request_pdu.response()
        return
    resp = request_pdu.response(Status.ESME_RTHROTTLED)
    assert resp.command_id == request_pdu.command_id | 0x80000000
    assert (resp.sequence, resp.status) == (42, Status.ESME_RTHROTTLED)


def test_response_fields_and_response_of_a_response() -> None:
    resp = SubmitSm(sequence=3).response(message_id="abc")
    assert resp == SubmitSmResp(sequence=3, message_id="abc")
    with pytest.raises(ValueError, match="no response"):
        resp.response()
    assert generic_nack(9, Status.ESME_RINVCMDID) == GenericNack(sequence=9, status=3)


@pytest.mark.parametrize("cls", [*BIND_CLASSES.values(), Outbind], ids=lambda c: c.__name__)
def test_passwords_never_appear_in_repr_or_str(cls: type[Pdu]) -> None:
    pdu = cls(sequence=1, system_id="shopvn", password="hunter2")  # type: ignore[call-arg]
    assert "hunter2" not in repr(pdu)
    assert "hunter2" not in str(pdu)
    assert "shopvn" in repr(pdu)


def test_pdus_compare_by_class_and_value() -> None:
    assert SubmitSm(short_message=b"x") == SubmitSm(short_message=b"x")
    assert SubmitSm(short_message=b"x") != DeliverSm(short_message=b"x")
    assert SubmitSmResp(message_id="1") != DeliverSmResp(message_id="1")


# --------------------------------------------------------------------------- properties

CSTRING = st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=24)
U8 = st.integers(0, 255)
U32 = st.integers(0, 0xFFFFFFFF)


def _typed_tlv(tag: int) -> st.SearchStrategy[tuple[int, bytes]]:
    if tag in TLV_INT_SIZE:
        size = TLV_INT_SIZE[tag]
        return st.integers(0, (1 << (8 * size)) - 1).map(lambda v: (tag, v.to_bytes(size, "big")))
    if tag in TLV_CSTRING:
        return CSTRING.map(lambda s: (tag, tlv_value(tag, s)))
    return st.binary(max_size=40).map(lambda b: (tag, b))


TLV = st.one_of(
    st.sampled_from(list(Tag)).flatmap(_typed_tlv),
    st.tuples(st.integers(0x1400, 0x3FFF), st.binary(max_size=40)),  # vendor range
    st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=300)),  # anything at all
)


def pdu_strategy(cls: type[Pdu]) -> st.SearchStrategy[Pdu]:
    """Any valid ``cls``: every mandatory field random within its wire type, TLVs when allowed."""
    fields: dict[str, st.SearchStrategy[Any]] = {"sequence": U32, "status": U32}
    fields["tlvs"] = st.lists(TLV, max_size=6) if cls.has_tlvs else st.just([])
    for f in dataclasses.fields(cls):
        if f.name in fields:
            continue
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        fields[f.name] = {"str": CSTRING, "int": U8, "bytes": st.binary(max_size=255)}[kind]
    return st.builds(cls, **fields)


ANY_PDU = st.sampled_from(list(PDU_CLASSES.values())).flatmap(pdu_strategy)


@pytest.mark.parametrize("cls", list(PDU_CLASSES.values()), ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip_every_pdu_class(cls: type[Pdu], data: st.DataObject) -> None:
    pdu = data.draw(pdu_strategy(cls))
    wire = encode(pdu)
    assert struct.unpack_from(">I", wire)[0] == len(wire)
    back = decode(wire)
    assert back == pdu
    assert encode(back) == wire


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_pdu_errors(data: bytes) -> None:
    _decode_or_pdu_error(data)
    _decode_or_pdu_error(reframe(data))


def _decode_or_pdu_error(data: bytes) -> None:
    """decode() either returns a PDU that re-encodes faithfully or raises a PduError."""
    try:
        pdu = decode(data)
    except PduError as err:
        assert err.reason
        return
    again = encode(pdu)
    assert decode(again) == pdu


def _mutations(draw: st.DrawFn, wire: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "set", "extend"]))
    pos = draw(st.integers(16, max(16, len(wire))))
    if kind == "truncate":
        return wire[:pos]
    if kind == "extend":
        return wire + draw(st.binary(min_size=1, max_size=8))
    if kind == "insert":
        return wire[:pos] + draw(st.binary(min_size=1, max_size=8)) + wire[pos:]
    if kind == "delete":
        return wire[:pos] + wire[pos + draw(st.integers(1, 8)) :]
    if pos >= len(wire):
        return wire
    byte = draw(U8) if kind == "set" else wire[pos] ^ (1 << draw(st.integers(0, 7)))
    return wire[:pos] + bytes((byte,)) + wire[pos + 1 :]


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    wire = encode(draw(ANY_PDU))
    for _ in range(draw(st.integers(1, 3))):
        wire = _mutations(draw, wire)
    return reframe(wire) if draw(st.booleans()) else wire


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_frames())
def test_mutated_valid_frames_only_ever_raise_pdu_errors(data: bytes) -> None:
    _decode_or_pdu_error(data)


@settings(max_examples=100, deadline=None)
@given(ANY_PDU, st.integers(0, 0xFFFFFFFF))
def test_any_command_id_with_a_valid_body_decodes_or_names_itself(pdu: Pdu, cid: int) -> None:
    wire = bytearray(encode(pdu))
    struct.pack_into(">I", wire, 4, cid)
    assume(cid not in PDU_CLASSES or cid != pdu.command_id)
    try:
        decode(bytes(wire))
    except UnknownCommandError as err:
        assert cid not in PDU_CLASSES
        assert err.command_id == cid and err.sequence == pdu.sequence
    except PduError as err:
        assert err.command_id == cid


# --------------------------------------------------------------------------- benchmark smoke


def test_bench_codec_command_prints_the_table_quickly() -> None:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "smppgw", "bench", "codec", "--seconds", "0.2"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert time.monotonic() - started < 10
    assert re.search(r"^machine: .+, CPython 3\.\d+\.\d+, 0\.2 s per figure$", out, re.M), out
    for label in ("encode submit_sm", "decode DLR deliver_sm"):
        row = re.search(
            label + r" \(.*?\)\s+([\d,]+)\s+([\d,]+)\s+\d+x\s+>= [\d,]+ (ok|MISSED)", out
        )
        assert row, out
        ours, smpplib = (int(g.replace(",", "")) for g in row.group(1, 2))
        assert ours > 1000 and smpplib > 100
    assert re.search(r"build \+ encode the same submit_sm\s+[\d,]+\s+[\d,]+\s+\d+x$", out, re.M)


def test_bench_codec_json_figures_and_check_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    from smppgw.cli import main

    code = main(["bench", "codec", "--seconds", "0.05", "--no-smpplib", "--json", "--check"])
    figures = json.loads(capsys.readouterr().out)
    assert figures["encode_submit_sm"] > 1000 and figures["decode_dlr"] > 1000
    assert figures["build_encode_submit_sm"] > 1000
    assert figures["smpplib_encode_submit_sm"] is None  # --no-smpplib
    assert figures["python"].startswith("CPython")
    meets = figures["encode_submit_sm"] >= 150_000 and figures["decode_dlr"] >= 100_000
    assert figures["meets_targets"] is meets
    assert code == (0 if meets else 1)  # --check makes a missed target fail the command


def test_bench_without_benchmark_name_shows_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "smppgw", "bench"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "codec" in result.stdout
