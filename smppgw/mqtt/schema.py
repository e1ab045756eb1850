"""The MQTT wire schema: jobs in, events out, with errors a client can act on.

Decoding is two-stage on purpose. msgspec parses the JSON (fast, bounded, no eval); then each
field is checked by hand, because a client whose job was refused needs to read *which*
field was wrong and why ("priority: expected one of high, normal, low, got 'urgent'"), and
because the job id must be recovered even when everything else is wrong: with an id the
gateway can answer on ``sms/status/<id>``; without one the payload is garbage, only fit for
``sms/rejected``.

- :class:`JobError` ``code="garbage"``: not UTF-8, not JSON, not an object, no usable id.
- :class:`JobError` ``code="invalid"``: a usable id (``job_id``) with bad fields; every bad
  field is named in ``reason``, separated by ``"; "``.

Unknown fields are ignored, so clients can send fields that a later version understands
without being refused by this one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from smppgw.config import MqttConfig
from smppgw.engine.message import OutboundMessage, Priority
from smppgw.pipeline.routing import RoutingError, sender_problem, sender_source

#: Longest text accepted, in characters after NFC. Far beyond any sane SMS (10 UCS2 parts
#: hold 670); the carrier's ``max_parts`` is the real limit. This one bounds work per job.
MAX_TEXT = 10_000
#: Longest ttl, in seconds: a year is beyond any SMSC's validity period.
MAX_TTL = 365 * 86400
#: Longest ``expect_reply``, in seconds (7 days), and the furthest ``send_at`` ahead.
MAX_EXPECT_REPLY = 7 * 86400
MAX_SEND_AHEAD = MAX_TTL
#: RFC 3339 date-time with a mandatory offset (``Z`` or ``+07:00``); fractions allowed.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
#: Bytes of a garbage payload echoed on ``sms/rejected``.
PAYLOAD_HEAD = 200
DEFAULT_MAX_PAYLOAD = MqttConfig().max_payload
PRIORITIES = ("high", "normal", "low")
#: ``transactional`` (OTP, order, delivery, payment notices) or ``marketing`` (the
#: ``consent:`` rules apply: opt-outs, hours, daily cap, label).
CATEGORIES = ("transactional", "marketing")
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

PriorityName = Literal["high", "normal", "low"]
CategoryName = Literal["transactional", "marketing"]
StatusName = Literal[
    "scheduled",
    "submitted",
    "delivered",
    "undelivered",
    "expired",
    "rejected",
    "failed",
    "cancelled",
]


class JobError(ValueError):
    """A payload that is not a sendable job.

    ``code`` is ``"garbage"`` (no status topic possible: count, log, publish to
    ``sms/rejected``) or ``"invalid"`` (publish ``rejected`` to ``sms/status/<job_id>``).
    """

    def __init__(
        self, code: Literal["garbage", "invalid"], reason: str, job_id: str | None = None
    ) -> None:
        self.code = code
        self.reason = reason
        self.job_id = job_id
        super().__init__(f"{code}: {reason}")


class Job(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One SMS request from ``sms/submit``, validated; ``text`` is already NFC."""

    id: str
    to: str
    text: str
    #: ``from`` on the wire (a Python keyword).
    sender: str | None = msgspec.field(default=None, name="from")
    carrier: str | None = None
    priority: PriorityName = "normal"
    #: Request a delivery receipt; None (not given): the carrier's ``registered_delivery``.
    dlr: bool | None = None
    #: Seconds the job may wait before it is ``expired`` instead of sent.
    ttl: int | None = None
    category: CategoryName = "transactional"
    #: May the job move to another carrier (``failover``)? None (not given): yes when
    #: routed by prefix, no when it forces a ``carrier``.
    failover: bool | None = None
    #: Not submitted before this wall-clock time (epoch seconds; RFC 3339 on the wire).
    send_at: float | None = None
    #: Seconds after submission during which an MO from ``to`` is this job's reply.
    expect_reply: int | None = None


class _IdOnly(msgspec.Struct):
    """Reads only ``id`` (skipping the rest) to answer an oversized payload by id."""

    id: Any = None


# ---------------------------------------------------------------------- decoding


def _show(value: object) -> str:
    """A JSON value for an error message, short enough for a status event."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _usable_id(value: object) -> str | None:
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def _recover_id(payload: bytes) -> str | None:
    """The id of a payload we will not fully parse, when it has a usable one."""
    try:
        return _usable_id(msgspec.json.decode(payload, type=_IdOnly).id)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _parse(payload: bytes) -> object:
    try:
        return msgspec.json.decode(payload)
    except RecursionError:
        raise JobError("garbage", "JSON is nested too deeply") from None
    except msgspec.DecodeError as exc:
        first = str(exc)
    # msgspec refuses an escaped lone surrogate ("\ud83d", what a JavaScript client sends
    # after cutting an emoji in half) as "truncated". It is valid JSON grammar, and the job
    # may carry a usable id: let the stdlib parser read it so the client gets a precise
    # ``rejected`` instead of silence.
    try:
        return json.loads(payload, parse_constant=_reject_constant)
    except RecursionError:
        raise JobError("garbage", "JSON is nested too deeply") from None
    except ValueError:
        raise JobError("garbage", f"not JSON: {first}") from None


def parse_send_at(value: object) -> tuple[float | None, str | None]:
    """``send_at`` as epoch seconds, or ``None`` and why not: an RFC 3339 string with an
    offset (``2026-12-06T09:00:00+07:00``) or a JSON number of epoch seconds."""
    if isinstance(value, bool) or value is None:
        return None, f"expected an RFC 3339 time with offset or epoch seconds, got {_show(value)}"
    if isinstance(value, int | float):
        if not 0 < value < 1e11:
            return None, f"epoch seconds out of range, got {_show(value)}"
        return float(value), None
    if isinstance(value, str):
        if not _RFC3339.fullmatch(value):
            return None, (
                "expected an RFC 3339 time with offset (like 2026-12-06T09:00:00+07:00), "
                f"got {_show(value)}"
            )
        try:
            moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        except ValueError as exc:
            return None, f"not a valid time ({exc}), got {_show(value)}"
        return moment.timestamp(), None
    return None, f"expected an RFC 3339 time with offset or epoch seconds, got {_show(value)}"


def _text_problem(field: str, value: str) -> str | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"{field}: contains an unpaired UTF-16 surrogate at character {exc.start}"
    return None


def decode_job(
    payload: bytes | bytearray | memoryview,
    *,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    max_text: int = MAX_TEXT,
) -> Job:
    """Validate one ``sms/submit`` payload; raise :class:`JobError` with a precise reason."""
    data = bytes(payload)
    if len(data) > max_payload:
        job_id = _recover_id(data)
        reason = f"payload is {len(data)} bytes, over the {max_payload}-byte limit"
        raise JobError("invalid" if job_id else "garbage", reason, job_id)
    if not data:
        raise JobError("garbage", "empty payload")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobError(
            "garbage", f"not UTF-8: invalid byte 0x{data[exc.start]:02x} at offset {exc.start}"
        ) from None
    obj = _parse(data)
    if not isinstance(obj, dict):
        raise JobError("garbage", f"expected a JSON object, got {_show(obj)}")
    if "id" not in obj:
        raise JobError("garbage", "id: required")
    job_id = _usable_id(obj["id"])
    if job_id is None:
        raw = obj["id"]
        if isinstance(raw, str):
            raise JobError(
                "garbage",
                f"id: must be 1 to 64 characters of A-Z a-z 0-9 . _ : -, got {_show(raw)}",
            )
        raise JobError("garbage", f"id: expected a string, got {_show(raw)}")
    problems: list[str] = []

    def string(field: str, *, required: bool) -> str | None:
        value = obj.get(field)
        if value is None:
            if required:
                problems.append(f"{field}: required")
            return None
        if not isinstance(value, str):
            problems.append(f"{field}: expected a string, got {_show(value)}")
            return None
        problem = _text_problem(field, value)
        if problem is not None:
            problems.append(problem)
            return None
        if not value.strip():
            problems.append(f"{field}: must not be empty")
            return None
        return value

    to = string("to", required=True)
    text = string("text", required=True)
    if text is not None:
        text = unicodedata.normalize("NFC", text)
        if len(text) > max_text:
            problems.append(f"text: {len(text)} characters, over the {max_text}-character limit")
    sender = string("from", required=False)
    if sender is not None:
        problem = sender_problem(sender)
        if problem is not None:
            problems.append(f"from: {problem}")
    carrier = string("carrier", required=False)
    priority = obj.get("priority", "normal")
    if priority not in PRIORITIES or not isinstance(priority, str):
        problems.append(f"priority: expected one of high, normal, low, got {_show(priority)}")
    # Absent: the carrier's registered_delivery decides (at intake, once routed).
    dlr = obj.get("dlr")
    if "dlr" in obj and not isinstance(dlr, bool):
        problems.append(f"dlr: expected true or false, got {_show(dlr)}")
    category = obj.get("category", "transactional")
    if category not in CATEGORIES or not isinstance(category, str):
        problems.append(
            f"category: expected one of transactional, marketing, got {_show(category)}"
        )
    failover = obj.get("failover")
    if failover is not None and not isinstance(failover, bool):
        problems.append(f"failover: expected true or false, got {_show(failover)}")
    ttl = obj.get("ttl")
    if ttl is not None:
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
            problems.append(f"ttl: expected a positive integer (seconds), got {_show(ttl)}")
        elif ttl > MAX_TTL:
            problems.append(f"ttl: at most {MAX_TTL} seconds (365 days), got {ttl}")
    send_at = None
    if "send_at" in obj:
        send_at, problem = parse_send_at(obj["send_at"])
        if problem is not None:
            problems.append(f"send_at: {problem}")
    expect_reply = obj.get("expect_reply")
    if expect_reply is not None and (
        not isinstance(expect_reply, int)
        or isinstance(expect_reply, bool)
        or not 1 <= expect_reply <= MAX_EXPECT_REPLY
    ):
        problems.append(
            f"expect_reply: expected whole seconds from 1 to {MAX_EXPECT_REPLY} (7 days), "
            f"got {_show(expect_reply)}"
        )
    if problems:
        raise JobError("invalid", "; ".join(problems), job_id)
    assert to is not None and text is not None  # guaranteed by the problems check
    return Job(
        id=job_id,
        to=to,
        text=text,
        sender=sender,
        carrier=carrier,
        priority=priority,
        dlr=dlr,
        ttl=ttl,
        category=category,
        failover=failover if isinstance(failover, bool) else None,
        send_at=send_at,
        expect_reply=expect_reply,
    )


def to_outbound(
    job: Job,
    destination: str,
    now: float,
    *,
    country_code: str | None = None,
    registered_delivery: bool = True,
) -> OutboundMessage:
    """The routed, sendable form of a job.

    ``destination`` is the normalised E.164 number
    (:func:`smppgw.pipeline.routing.normalize_msisdn`);
    ``now`` is ``time.time()`` at intake, so a ttl counts from when the gateway took the job;
    ``country_code`` normalises a national-format numeric ``from``;
    ``registered_delivery`` (the routed carrier's) is ``dlr`` when the job does not say.
    """
    source = None
    if job.sender is not None:
        try:
            source = sender_source(job.sender, country_code)
        except RoutingError as exc:
            raise JobError("invalid", f"from: {exc.reason}", job.id) from None
    expires_at = now + job.ttl if job.ttl is not None else None
    problem = send_at_problem(job.send_at, expires_at, now)
    if problem is not None:
        raise JobError("invalid", problem, job.id)
    return OutboundMessage(
        job_id=job.id,
        destination=destination,
        text=job.text,  # NFC since decode_job
        priority=Priority.parse(job.priority),
        source=source,
        dlr=registered_delivery if job.dlr is None else job.dlr,
        expires_at=expires_at,
    )


#: The carrier expires a job with less than this much ttl left rather than send it
#: (``smppgw.engine.carrier``): a ``send_at`` must leave at least this much.
TTL_MARGIN = 1.0


def send_at_problem(send_at: float | None, expires_at: float | None, now: float) -> str | None:
    """Why ``send_at`` cannot be honoured, naming the field: beyond the job's ttl (which
    counts from publication) or more than a year ahead. A time already past is fine (the
    job goes at once)."""
    if send_at is None:
        return None
    if expires_at is not None and send_at > expires_at - TTL_MARGIN:
        return (
            f"send_at: {format_at(send_at)} is after the job's ttl runs out "
            f"({format_at(expires_at)}; ttl counts from publication)"
        )
    if send_at > now + MAX_SEND_AHEAD:
        return f"send_at: {format_at(send_at)} is more than 365 days ahead"
    return None


# ---------------------------------------------------------------------- events


class ErrorInfo(msgspec.Struct, frozen=True):
    #: Machine-readable: ``invalid``, ``no_route``, ``unknown_carrier``, an SMPP status
    #: name such as ``ESME_RINVDSTADR``, ...
    code: str
    reason: str


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """A carrier that did not take the job, and why: an SMPP status name (refused),
    ``retries_exhausted``, ``down`` (no bind for ``failover_after``) or ``paused``."""

    carrier: str
    error: str


class StatusEvent(msgspec.Struct, frozen=True, kw_only=True):
    """``sms/status/<id>``: every key is always present (null when unknown)."""

    id: str
    status: StatusName
    carrier: str | None = None
    parts: int = 0
    #: SMSC message ids in part order, as the SMSC wrote them.
    message_ids: tuple[str, ...] = ()
    error: ErrorInfo | None = None
    at: str
    #: Carriers tried before ``carrier`` that did not take the job (failover), oldest first.
    attempts: tuple[Attempt, ...] = ()


class ScheduledEvent(StatusEvent, frozen=True, kw_only=True):
    """``scheduled``: a status event plus ``send_at``, when the job will be released."""

    send_at: str


class InboundEvent(msgspec.Struct, frozen=True, kw_only=True):
    """``sms/inbound/<carrier>``: one MO message, concatenated parts already joined."""

    carrier: str
    sender: str = msgspec.field(name="from")
    to: str
    text: str
    at: str
    #: The id (as its publisher sent it) of the job this MO answers (``expect_reply``);
    #: null when it answers none. Always present.
    in_reply_to: str | None = None


class ConsentEvent(msgspec.Struct, frozen=True, kw_only=True):
    """``sms/consent``: one number's consent changed (an MO keyword, or an operator)."""

    number: str
    action: Literal["opt_out", "opt_in"]
    #: The configured keyword the MO matched, ``mo`` for any MO (``consent.mo_is_optin``),
    #: null for an operator's change.
    keyword: str | None
    #: The carrier the MO came through (null for an operator's change).
    carrier: str | None
    at: str
    #: ``mo`` or ``admin`` (``smppgw consent``).
    source: str = "mo"


class RejectedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """``sms/rejected``: a payload that was not a job, for whoever debugs the sender.

    ``payload_head`` is the first 200 bytes decoded as UTF-8 with U+FFFD for undecodable
    bytes: readable in ``mosquitto_sub`` (which is where it gets read), JSON-safe, and for
    binary garbage lossy by design (``size`` and ``reason`` say what matters).
    """

    reason: str
    payload_head: str
    size: int
    at: str


Event = StatusEvent | InboundEvent | RejectedEvent | ConsentEvent

_encoder = msgspec.json.Encoder()


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_status(payload: bytes) -> StatusEvent:
    """For clients and tests: parse a status event."""
    return msgspec.json.decode(payload, type=StatusEvent)


def decode_inbound(payload: bytes) -> InboundEvent:
    return msgspec.json.decode(payload, type=InboundEvent)


def decode_consent(payload: bytes) -> ConsentEvent:
    return msgspec.json.decode(payload, type=ConsentEvent)


def decode_rejected(payload: bytes) -> RejectedEvent:
    return msgspec.json.decode(payload, type=RejectedEvent)


def format_at(timestamp: float) -> str:
    """``time.time()`` → ``"2026-11-25T16:46:30.123Z"`` (UTC, milliseconds)."""
    millis = round(timestamp * 1000)
    seconds, ms = divmod(millis, 1000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms:03d}Z"


def rejected_event(payload: bytes | bytearray | memoryview, reason: str, at: str) -> RejectedEvent:
    data = bytes(payload[:PAYLOAD_HEAD])
    return RejectedEvent(
        reason=reason,
        payload_head=data.decode("utf-8", errors="replace"),
        size=len(payload),
        at=at,
    )
