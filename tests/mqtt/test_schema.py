"""Job decoding (precise reasons, id recovery, garbage), events and the outbound form."""

from __future__ import annotations

import json
import time
import unicodedata
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smppgw.config import SourceConfig
from smppgw.engine.message import Priority
from smppgw.mqtt.schema import (
    MAX_TEXT,
    ErrorInfo,
    InboundEvent,
    Job,
    JobError,
    StatusEvent,
    decode_inbound,
    decode_job,
    decode_rejected,
    decode_status,
    encode_event,
    format_at,
    rejected_event,
    to_outbound,
)


def payload(**fields: Any) -> bytes:
    job: dict[str, Any] = {"id": "order-1984", "to": "0912345678", "text": "Xin chào"}
    job.update(fields)
    return json.dumps({k: v for k, v in job.items() if v is not ...}).encode()


def invalid(data: bytes) -> JobError:
    with pytest.raises(JobError) as info:
        decode_job(data)
    return info.value


# ---------------------------------------------------------------------- valid jobs


def test_minimal_job_gets_the_defaults() -> None:
    job = decode_job(payload())
    assert job == Job(id="order-1984", to="0912345678", text="Xin chào")
    assert (job.sender, job.carrier, job.priority, job.dlr, job.ttl) == (
        None,
        None,
        "normal",
        None,  # the carrier's registered_delivery decides
        None,
    )


def test_full_job() -> None:
    data = payload(**{"from": "SHOPVN"}, carrier="viettel", priority="high", dlr=False, ttl=300)
    job = decode_job(data)
    assert job.sender == "SHOPVN"
    assert (job.carrier, job.priority, job.dlr, job.ttl) == ("viettel", "high", False, 300)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    job = decode_job(payload(campaign="tet", meta={"a": [1, 2, {"b": None}]}))
    assert job.id == "order-1984"


def test_text_is_nfc_normalised() -> None:
    decomposed = unicodedata.normalize("NFD", "Đơn hàng đã giao")
    assert decomposed != "Đơn hàng đã giao"
    assert decode_job(payload(text=decomposed)).text == "Đơn hàng đã giao"


@pytest.mark.parametrize("job_id", ["a", "A" * 64, "order:2026.11_25-x"])
def test_id_charset_and_length(job_id: str) -> None:
    assert decode_job(payload(id=job_id)).id == job_id


def test_job_round_trips_with_from_on_the_wire() -> None:
    job = decode_job(payload(**{"from": "SHOPVN"}))
    wire = json.loads(msgspec.json.encode(job))
    assert wire["from"] == "SHOPVN" and "sender" not in wire


# ---------------------------------------------------------------------- invalid fields


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"to": ...}, "to: required"),
        ({"to": None}, "to: required"),
        ({"to": 84912345678}, "to: expected a string, got 84912345678"),
        ({"to": "  "}, "to: must not be empty"),
        ({"text": ...}, "text: required"),
        ({"text": ""}, "text: must not be empty"),
        ({"text": ["a"]}, "text: expected a string, got an array"),
        (
            {"text": "x" * (MAX_TEXT + 1)},
            f"text: {MAX_TEXT + 1} characters, over the {MAX_TEXT}-character limit",
        ),
        ({"from": 5}, "from: expected a string, got 5"),
        ({"from": "TOOLONGBRANDNAME"}, "from: an alphanumeric sender has at most 11 characters"),
        ({"from": "Shóp"}, "from: an alphanumeric sender must be printable ASCII"),
        ({"carrier": ""}, "carrier: must not be empty"),
        ({"carrier": {"name": "x"}}, "carrier: expected a string, got an object"),
        ({"priority": "urgent"}, "priority: expected one of high, normal, low, got 'urgent'"),
        ({"priority": "HIGH"}, "priority: expected one of high, normal, low, got 'HIGH'"),
        ({"priority": 1}, "priority: expected one of high, normal, low, got 1"),
        ({"priority": None}, "priority: expected one of high, normal, low, got null"),
        ({"category": "promo"}, "category: expected one of transactional, marketing, got 'promo'"),
        ({"category": "Marketing"}, "category: expected one of transactional, marketing, got"),
        ({"category": None}, "category: expected one of transactional, marketing, got null"),
        ({"dlr": "yes"}, "dlr: expected true or false, got 'yes'"),
        ({"dlr": 1}, "dlr: expected true or false, got 1"),
        ({"failover": "yes"}, "failover: expected true or false, got 'yes'"),
        ({"failover": 0}, "failover: expected true or false, got 0"),
        ({"ttl": 0}, "ttl: expected a positive integer (seconds), got 0"),
        ({"ttl": -5}, "ttl: expected a positive integer (seconds), got -5"),
        ({"ttl": 1.5}, "ttl: expected a positive integer (seconds), got 1.5"),
        ({"ttl": True}, "ttl: expected a positive integer (seconds), got true"),
        ({"ttl": "60"}, "ttl: expected a positive integer (seconds), got '60'"),
        ({"ttl": 10**9}, "ttl: at most 31536000 seconds (365 days), got 1000000000"),
    ],
)
def test_each_invalid_field_is_named(fields: dict[str, Any], reason: str) -> None:
    error = invalid(payload(**fields))
    assert error.code == "invalid"
    assert error.job_id == "order-1984"
    assert error.reason.startswith(reason), error.reason


def test_every_bad_field_is_reported_together() -> None:
    error = invalid(payload(to=1, priority="urgent", dlr="no"))
    assert error.reason == (
        "to: expected a string, got 1; "
        "priority: expected one of high, normal, low, got 'urgent'; "
        "dlr: expected true or false, got 'no'"
    )


def test_lone_surrogate_from_a_cut_emoji_is_invalid_not_garbage() -> None:
    data = b'{"id": "otp-7", "to": "0912345678", "text": "ok \\ud83d"}'
    error = invalid(data)
    assert (error.code, error.job_id) == ("invalid", "otp-7")
    assert error.reason == "text: contains an unpaired UTF-16 surrogate at character 3"


# ---------------------------------------------------------------------- garbage


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty payload"),
        (b"hello", "not JSON: "),
        (b'{"id": "a", "to": ', "not JSON: "),
        (b'{"id": "a", "to": "1", "text": NaN}', "not JSON: "),
        (b"[1, 2, 3]", "expected a JSON object, got an array"),
        (b'"just a string"', "expected a JSON object, got 'just a string'"),
        (b"42", "expected a JSON object, got 42"),
        (b"null", "expected a JSON object, got null"),
        (b'{"to": "0912345678", "text": "hi"}', "id: required"),
        (b'{"id": 42, "to": "0912345678", "text": "hi"}', "id: expected a string, got 42"),
        (
            b'{"id": "", "text": "hi"}',
            "id: must be 1 to 64 characters of A-Z a-z 0-9 . _ : -, got ''",
        ),
        (b'{"id": "a/b"}', "id: must be 1 to 64 characters of A-Z a-z 0-9 . _ : -, got 'a/b'"),
        (b'{"id": "a+#"}', "id: must be 1 to 64 characters"),
        (b'{"id": "' + b"x" * 65 + b'"}', "id: must be 1 to 64 characters"),
        (b'{"id": "order 1"}', "id: must be 1 to 64 characters"),
        (b'{"id": "a\xffb", "to": "1", "text": "x"}', "not UTF-8: invalid byte 0xff at offset 9"),
        (b'{"x": "\xc3", "id": "ok", "to": "1"}', "not UTF-8: invalid byte 0xc3 at offset 7"),
    ],
)
def test_garbage(data: bytes, reason: str) -> None:
    error = invalid(data)
    assert error.code == "garbage"
    assert error.job_id is None
    assert error.reason.startswith(reason), error.reason


def test_deeply_nested_json_is_garbage_not_a_crash() -> None:
    depth = 100_000
    data = b'{"id": "deep", "x": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(JobError) as info:
        decode_job(data, max_payload=len(data))
    assert info.value.code == "garbage"
    assert info.value.reason == "JSON is nested too deeply"
    # Still a string the gateway can log and publish.
    assert encode_event(rejected_event(data, info.value.reason, format_at(0)))


def test_deeply_nested_objects_too() -> None:
    depth = 100_000
    data = b'{"a":' * depth + b"1" + b"}" * depth
    error = invalid(data)  # over the default limit: only the id recovery runs, and fails
    assert error.code == "garbage"
    with pytest.raises(JobError, match="nested too deeply"):
        decode_job(data, max_payload=len(data))


def test_ten_megabyte_payload_with_a_usable_id_is_invalid_with_the_limit() -> None:
    data = payload(id="big-1", text="x" * 10_000_000)
    error = invalid(data)
    assert (error.code, error.job_id) == ("invalid", "big-1")
    assert error.reason == f"payload is {len(data)} bytes, over the 65536-byte limit"


def test_ten_megabyte_garbage_is_garbage() -> None:
    data = b"\x00" * 10_000_000
    error = invalid(data)
    assert (error.code, error.job_id) == ("garbage", None)
    assert error.reason == "payload is 10000000 bytes, over the 65536-byte limit"


def test_payload_limit_is_configurable() -> None:
    data = payload()
    decode_job(data, max_payload=len(data))
    with pytest.raises(JobError, match=f"payload is {len(data)} bytes, over the 10-byte limit"):
        decode_job(data, max_payload=10)


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_arbitrary_bytes_raise_only_job_error(data: bytes) -> None:
    try:
        job = decode_job(data)
    except JobError as exc:
        assert exc.code in ("garbage", "invalid")
        assert (exc.job_id is None) == (exc.code == "garbage")
    else:
        assert isinstance(job, Job)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@given(
    st.dictionaries(
        st.sampled_from(["id", "to", "text", "from", "carrier", "priority", "dlr", "ttl", "x"]),
        json_values,
    )
)
@settings(max_examples=300)
def test_arbitrary_objects_raise_only_job_error(fields: dict[str, Any]) -> None:
    data = json.dumps(fields).encode()
    try:
        job = decode_job(data)
    except JobError as exc:
        if isinstance(fields.get("id"), str) and exc.code == "invalid":
            assert exc.job_id == fields["id"]
    else:
        assert job.id == fields["id"]


# ---------------------------------------------------------------------- outbound


def test_to_outbound() -> None:
    job = decode_job(payload(priority="high", ttl=60, dlr=False, **{"from": "SHOPVN"}))
    message = to_outbound(job, "84912345678", 1000.0)
    assert message.job_id == "order-1984"
    assert message.destination == "84912345678"
    assert message.text == "Xin chào"
    assert message.priority is Priority.HIGH
    assert message.source == SourceConfig("SHOPVN", 5, 0)
    assert message.dlr is False
    assert message.expires_at == 1060.0
    assert message.attempt == 0


def test_to_outbound_dlr_defaults_to_the_carrier_registered_delivery() -> None:
    unsaid = decode_job(payload())
    assert to_outbound(unsaid, "84912345678", 0.0, registered_delivery=False).dlr is False
    assert to_outbound(unsaid, "84912345678", 0.0, registered_delivery=True).dlr is True
    said = decode_job(payload(dlr=True))
    assert to_outbound(said, "84912345678", 0.0, registered_delivery=False).dlr is True


def test_to_outbound_defaults() -> None:
    message = to_outbound(decode_job(payload()), "84912345678", 5.0)
    assert (message.priority, message.source, message.dlr, message.expires_at) == (
        Priority.NORMAL,
        None,
        True,
        None,
    )


def test_text_is_nfc_from_decode_job_through_to_outbound() -> None:
    """NFC once, at decode_job; to_outbound carries the text as it is."""
    job = decode_job(payload(text=unicodedata.normalize("NFD", "Việt")))
    assert job.text == unicodedata.normalize("NFC", "Việt")
    assert to_outbound(job, "84912345678", 0).text is job.text


@pytest.mark.parametrize(
    ("sender", "source"),
    [
        ("0912345678", SourceConfig("84912345678", 1, 1)),
        ("+84 912 345 678", SourceConfig("84912345678", 1, 1)),
        ("8079", SourceConfig("8079", 0, 1)),
    ],
)
def test_numeric_sender(sender: str, source: SourceConfig) -> None:
    job = Job(id="a", to="1", text="x", sender=sender)
    assert to_outbound(job, "84912345678", 0, country_code="84").source == source


def test_invalid_sender_is_an_invalid_job() -> None:
    job = Job(id="a", to="1", text="x", sender="0912")
    with pytest.raises(JobError) as info:
        to_outbound(job, "84912345678", 0, country_code="84")
    assert (info.value.code, info.value.job_id) == ("invalid", "a")
    assert info.value.reason.startswith("from: sender '0912' is too short")


# ---------------------------------------------------------------------- events


def test_format_at() -> None:
    assert format_at(1795625190.123) == "2026-11-25T16:46:30.123Z"
    assert format_at(0) == "1970-01-01T00:00:00.000Z"
    assert format_at(1.9996) == "1970-01-01T00:00:02.000Z"
    now = format_at(time.time())
    assert len(now) == 24 and now.endswith("Z")


def test_status_event_has_every_key_in_contract_order() -> None:
    event = StatusEvent(
        id="order-1984",
        status="submitted",
        carrier="viettel",
        parts=2,
        message_ids=("0a1b", "0a1c"),
        at="2026-11-25T16:46:30.123Z",
    )
    data = encode_event(event)
    assert data == (
        b'{"id":"order-1984","status":"submitted","carrier":"viettel","parts":2,'
        b'"message_ids":["0a1b","0a1c"],"error":null,"at":"2026-11-25T16:46:30.123Z",'
        b'"attempts":[]}'
    )
    assert decode_status(data) == event


def test_rejected_status_carries_the_error() -> None:
    event = StatusEvent(
        id="x", status="rejected", error=ErrorInfo("no_route", "no carrier"), at=format_at(0)
    )
    wire = json.loads(encode_event(event))
    assert wire["error"] == {"code": "no_route", "reason": "no carrier"}
    assert wire["carrier"] is None and wire["message_ids"] == [] and wire["parts"] == 0


def test_inbound_event_uses_from() -> None:
    event = InboundEvent(
        carrier="viettel", sender="84912345678", to="8079", text="1", at=format_at(0)
    )
    wire = json.loads(encode_event(event))
    assert list(wire) == ["carrier", "from", "to", "text", "at", "in_reply_to"]
    assert decode_inbound(encode_event(event)) == event


def test_rejected_event_payload_head() -> None:
    data = b"\xff\xfe" + b"A" * 500
    event = rejected_event(data, "not UTF-8", format_at(0))
    assert event.payload_head == "\ufffd\ufffd" + "A" * 198
    assert event.size == 502
    wire = json.loads(encode_event(event))
    assert list(wire) == ["reason", "payload_head", "size", "at"]
    assert decode_rejected(encode_event(event)) == event


def test_rejected_event_cut_inside_a_utf8_sequence() -> None:
    data = "é".encode() * 150  # 300 bytes; byte 200 ends a character exactly
    assert rejected_event(data, "r", "t").payload_head == "é" * 100
    data = b"a" + "é".encode() * 150  # the cut falls inside a character
    assert rejected_event(data, "r", "t").payload_head == "a" + "é" * 99 + "\ufffd"
