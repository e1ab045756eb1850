"""The values that cross the store's boundary: jobs in, job views and events out.

Kept apart from the SQL so that the gateway, the carriers and the tests can build and read
them without knowing the schema.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum

from smppgw.config import SourceConfig
from smppgw.engine.message import OutboundMessage, Priority


class StoreError(Exception):
    """A write or read did not happen (database locked, disk full, I/O error, closed store).

    The gateway treats it as "not durable": it does not PUBACK the job nor answer the
    deliver_sm, so the broker or the SMSC sends it again later.
    """


class JobState(IntEnum):
    """Where a job is in its life; stored as a small integer in the queue index."""

    #: Held until a time (``send_at``, the marketing window, a deferred cap): in no lane,
    #: released by :class:`smppgw.pipeline.holds.Holds`. Below ``QUEUED`` so that every
    #: "not yet submitted" test (``state < 3``) counts it, and no "done" test does.
    HELD = -1
    #: Waiting in its carrier's lane (possibly until ``next_attempt``).
    QUEUED = 0
    #: Claimed by a carrier scheduler; no submit_sm written yet, so safe to re-queue.
    SENDING = 1
    #: A submit_sm may have left: after a crash its outcome is unknown.
    IN_FLIGHT = 2
    #: Every part accepted by the SMSC; waiting for receipts.
    SUBMITTED = 3
    #: A final status was recorded (and its event put in the outbox).
    FINAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(slots=True)
class StoredJob:
    """One routed, validated job as the store keeps it."""

    job_id: str
    carrier: str
    #: 0 high, 1 normal, 2 low (``Priority``); lower lanes are always claimed first.
    lane: int
    #: E.164 digits, no "+".
    destination: str
    text: str
    source: SourceConfig | None = None
    dlr: bool = True
    #: Wall-clock deadline (``time.time()``) from the job's ttl.
    expires_at: float | None = None
    #: MQTT 5 Response Topic / Correlation Data of the submit PUBLISH, echoed on events.
    response_topic: str | None = None
    correlation_data: bytes | None = None
    attempt: int = 0
    received_at: float = field(default_factory=time.time)
    #: Carriers this job may use, in order (the first is where it was routed); empty: it
    #: stays with ``carrier`` (:mod:`smppgw.pipeline.failover`).
    chain: tuple[str, ...] = ()
    #: Carriers that did not take it, with why: ``(carrier, error)`` pairs, oldest first.
    attempts: tuple[tuple[str, str], ...] = ()
    #: The job's ``send_at`` (wall clock), shown on its ``scheduled`` event.
    send_at: float | None = None
    #: Seconds an MO from ``destination`` is tied to this job once it is submitted.
    expect_reply: int | None = None
    #: Set: the job is added held (``JobState.HELD``) until then, for ``hold_reason``.
    held_until: float | None = None
    hold_reason: str | None = None
    #: Stored with the job in the same transaction when it is new (a held job's
    #: ``scheduled`` event); nothing when its id is already known.
    events: tuple[OutboxEvent, ...] = ()
    #: ``transactional`` or ``marketing`` (the ``consent:`` rules apply).
    category: str = "transactional"

    def outbound(self) -> OutboundMessage:
        """The carrier's view of this job."""
        return OutboundMessage(
            job_id=self.job_id,
            destination=self.destination,
            text=self.text,
            priority=Priority(self.lane),
            source=self.source,
            dlr=self.dlr,
            expires_at=self.expires_at,
            attempt=self.attempt,
            context=self,
        )


@dataclass(slots=True, frozen=True)
class Usage:
    """A tenant job's parts, counted against ``tenant_usage`` in the transaction that adds
    it; with ``limit``, a job that would take the day's total over it is not added."""

    tenant: str
    #: The gateway's local date, ``YYYY-MM-DD``.
    day: str
    parts: int
    limit: int | None = None


@dataclass(slots=True)
class ConsentChange:
    """A number's consent to record, with the events that announce it (stored only when
    it changes something)."""

    #: E.164 digits.
    number: str
    #: ``opt_out`` or ``opt_in``.
    action: str
    #: The configured keyword that matched (``mo``: any MO, ``consent.mo_is_optin``);
    #: None for an operator's change.
    keyword: str | None
    #: ``mo`` or ``admin``.
    source: str
    carrier: str | None = None
    #: Record only when the number has no consent record at all (an implicit opt-in never
    #: overrides an explicit opt-out).
    only_if_unknown: bool = False
    events: list[OutboxEvent] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class ConsentRecord:
    """One number's last consent change, as ``smppgw consent list/export`` shows it."""

    number: str
    opted_out: bool
    keyword: str | None
    source: str
    carrier: str | None
    changed_at: float


@dataclass(slots=True)
class OutboxEvent:
    """ "Publish ``payload`` to ``topic`` at QoS 1", kept until the broker PUBACKs it.

    A Response Topic echo is a second event whose ``topic`` is the response topic and whose
    ``correlation_data`` is the job's Correlation Data.
    """

    topic: str
    payload: bytes
    correlation_data: bytes | None = None
    #: Assigned by the store; increasing, never reused (so ``after_id`` paging is safe).
    #: Set on events read back (``pending_events``) only: the store never changes an event
    #: it is given (a writer process would change a copy), ``add_events`` returns the ids.
    event_id: int = 0


@dataclass(slots=True, frozen=True)
class DeadEvent:
    """An outbox event the broker would not take, set aside (``dead_events``) so that the
    others flow; kept for an operator to inspect, never published again by the gateway."""

    event_id: int
    topic: str
    payload: bytes
    correlation_data: bytes | None
    #: Why, in words (the check that failed, the PUBACK reason code, ...).
    reason: str
    #: Wall-clock time it was set aside.
    dead_at: float


@dataclass(slots=True)
class JobView:
    """Everything the gateway needs to build a status event for a job."""

    job_id: str
    carrier: str | None
    lane: int
    state: str
    #: ``submitted`` or a final status; ``None`` while not yet submitted.
    status: str | None
    #: Error code of a final status (``unknown_outcome``, ``no_route``, an SMPP status name).
    error_code: str | None
    destination: str | None
    dlr: bool
    attempt: int
    parts: int
    #: Raw message ids as the SMSC wrote them, in part order (index = part number).
    message_ids: list[str]
    #: Last receipt state per part (``DELIVRD``, ``ENROUTE``, ...), ``None`` before any.
    part_states: list[str | None]
    response_topic: str | None
    correlation_data: bytes | None
    received_at: float
    expires_at: float | None
    #: When the job was submitted or became final (purge age).
    done_at: float | None
    #: Carriers that did not take it (``StoredJob.attempts``).
    attempts: tuple[tuple[str, str], ...] = ()
    #: Held jobs: when the release timer looks at it again, and why it is held.
    held_until: float | None = None
    hold_reason: str | None = None
    send_at: float | None = None


@dataclass(slots=True, frozen=True)
class ReplyWindow:
    """An open ``expect_reply`` window: the MO from ``number`` is this job's reply."""

    #: The job's store key (``<tenant>/<id>`` for a named tenant).
    job_id: str
    number: str
    until: float
    response_topic: str | None
    correlation_data: bytes | None


@dataclass(slots=True, frozen=True)
class RecoveryReport:
    """What ``Store.recover`` did with jobs a previous run left mid-send."""

    #: Claimed but never written to an SMSC: back in their lanes, in arrival order.
    requeued: int
    #: Possibly sent; re-queued because the carrier has ``resend_on_timeout``.
    resent: int
    #: Possibly sent; final ``failed`` / ``unknown_outcome`` (resending could duplicate).
    failed: list[str]


@dataclass(slots=True, frozen=True)
class StoreStats:
    """Counters for metrics; a snapshot, cheap to take from any thread."""

    commits: int
    failed_batches: int
    operations: int
    #: Largest number of operations one transaction carried.
    max_batch: int
    #: Seconds from BEGIN to the end of COMMIT of the last batch.
    last_commit_seconds: float
    commit_seconds_total: float
