"""Carrier outcomes → durable state and outbox events (the gateway's ``CarrierEvents``).

Each method returns only after the store has committed the state change together with the
events it causes, which is what lets the carrier answer a deliver_sm ("nothing lost" in
docs/architecture.md) and what
makes every status event reach the broker even across a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import structlog

from smppgw.config import MqttConfig
from smppgw.engine.message import OutboundMessage
from smppgw.mqtt.schema import (
    Attempt,
    ErrorInfo,
    ScheduledEvent,
    StatusEvent,
    encode_event,
    format_at,
)
from smppgw.ops.telemetry import Telemetry
from smppgw.outcome import failed, unmatched_status
from smppgw.pipeline.consent import ConsentDesk, MoPlan
from smppgw.pipeline.envelope import UNMATCHED_SUFFIX
from smppgw.pipeline.failover import Failover
from smppgw.pipeline.inbound import MoEvents
from smppgw.smpp.receipt import Receipt
from smppgw.store import JobView, OutboxEvent, StoreAPI, StoredJob

log = structlog.get_logger("smppgw.events")


class _At:
    """``format_at`` with the date and time of day cached per whole second.

    Every status event carries ``at``; formatting a datetime costs more than the rest of
    the event, and a busy gateway stamps thousands of events within the same second. The
    cache is one tuple, swapped whole, so the store's writer thread (receipt events) and
    the event loop can share it without a lock."""

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, timestamp: float) -> str:
        seconds, ms = divmod(round(timestamp * 1000), 1000)
        cached = self._cached
        if cached[0] != seconds:
            cached = (seconds, format_at(seconds)[:-5])  # drop ".000Z"
            self._cached = cached
        return f"{cached[1]}.{ms:03d}Z"


class EventFactory:
    """Builds the outbox events for a status change: ``<status_topic>/<key>`` and, when the
    job came with an MQTT 5 Response Topic, a copy there with its Correlation Data.

    ``key`` is the job's store key: its id, or ``<tenant>/<id>`` for a named tenant
    (``smppgw.pipeline.tenancy``), so a tenant's events go to ``sms/status/<tenant>/<id>``; the
    payload's ``id`` is always the id the client sent."""

    def __init__(self, mqtt: MqttConfig) -> None:
        self.status_topic = mqtt.status_topic.rstrip("/")
        self.inbound_topic = mqtt.inbound_topic.rstrip("/")
        self.rejected_topic = mqtt.rejected_topic
        self.unmatched_topic = f"{self.status_topic}-{UNMATCHED_SUFFIX}"
        self._at = _At()

    def status(
        self,
        job_id: str,
        status: str,
        *,
        carrier: str | None,
        parts: int = 0,
        message_ids: tuple[str, ...] | list[str] = (),
        code: str | None = None,
        reason: str | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        attempts: tuple[tuple[str, str], ...] = (),
    ) -> list[OutboxEvent]:
        error = ErrorInfo(code=code, reason=reason or code) if code is not None else None
        payload = encode_event(
            StatusEvent(
                id=job_id.rpartition("/")[2],
                status=status,  # type: ignore[arg-type]
                carrier=carrier,
                parts=parts,
                message_ids=tuple(message_ids),
                error=error,
                attempts=tuple(Attempt(carrier=c, error=e) for c, e in attempts),
                at=self._at(time.time()),
            )
        )
        events = [OutboxEvent(f"{self.status_topic}/{job_id}", payload)]
        if response_topic:
            events.append(OutboxEvent(response_topic, payload, correlation_data))
        return events

    def scheduled(self, job: StoredJob, send_at: float) -> list[OutboxEvent]:
        """``scheduled``: the job is held; ``send_at`` says when it will be released."""
        payload = encode_event(
            ScheduledEvent(
                id=job.job_id.rpartition("/")[2],
                status="scheduled",
                carrier=job.carrier,
                at=self._at(time.time()),
                send_at=format_at(send_at),
            )
        )
        events = [OutboxEvent(f"{self.status_topic}/{job.job_id}", payload)]
        if job.response_topic:
            events.append(OutboxEvent(job.response_topic, payload, job.correlation_data))
        return events

    def for_view(self, view: JobView, status: str, reason: str | None = None) -> list[OutboxEvent]:
        """Events for a job the store already knows (receipts, recovery)."""
        failed_parts = [f"part {i + 1}: {s}" for i, s in enumerate(view.part_states) if failed(s)]
        code = None
        if status in ("undelivered", "expired", "failed", "rejected"):
            code = view.error_code or status
            reason = reason or ", ".join(failed_parts) or code
        return self.status(
            view.job_id,
            status,
            carrier=view.carrier,
            parts=view.parts,
            message_ids=view.message_ids,
            code=code,
            reason=reason,
            response_topic=view.response_topic,
            correlation_data=view.correlation_data,
            attempts=view.attempts,
        )


class GatewayEvents:
    """The gateway's side of the carrier interface, backed by the store."""

    def __init__(
        self,
        store: StoreAPI,
        factory: EventFactory,
        telemetry: Telemetry,
        on_events: Callable[[], None],
        on_left: Callable[[str], None] | None = None,
        failover: Failover | None = None,
        mo: MoEvents | None = None,
        *,
        consent: ConsentDesk | None = None,
        on_job: Callable[[str], None] | None = None,
    ) -> None:
        """``on_left(job_id)``: the store recorded the job submitted or final, so it no
        longer waits (tenants' ``max_queued`` bookkeeping). ``failover``: a failed job
        that its chain lets move goes to its next carrier instead of ending. ``mo``: where
        MO messages go (replies, tenants' numbers and keywords); default: every MO to
        ``<inbound_topic>/<carrier>``. ``consent``: MO keywords change consent and get
        replies, recorded with their MO (None: MO is only published); ``on_job(carrier)``:
        a reply job was queued for ``carrier``."""
        self._failover = failover
        self.mo = mo if mo is not None else MoEvents(inbound_topic=factory.inbound_topic)
        self._store = store
        self._factory = factory
        self._telemetry = telemetry
        self._on_events = on_events
        self._on_left = on_left
        self._consent = consent
        self._on_job = on_job

    async def sending(self, carrier: str, job_ids: list[str]) -> None:
        """A submit_sm for these jobs is about to be written: after a crash their outcome
        is unknown (recover() then fails them unless resend_on_timeout)."""
        await self._store.mark_in_flight(job_ids)

    async def submitted(
        self, carrier: str, message: OutboundMessage, message_ids: list[str], keys: list[str]
    ) -> None:
        """``keys``: the ids as the carrier normalised them for matching (once, there)."""
        job = _stored(message)
        events = self._factory.status(
            job.job_id,
            "submitted",
            carrier=carrier,
            parts=len(message_ids),
            message_ids=message_ids,
            response_topic=job.response_topic,
            correlation_data=job.correlation_data,
            attempts=job.attempts,
        )
        await self._store.mark_submitted(
            job.job_id, carrier, keys, message_ids, final=not job.dlr, events=events
        )
        if job.attempts and self._failover is not None:
            await self._failover.after_submit(carrier, job)
        if self._on_left is not None:
            self._on_left(job.job_id)
        self._telemetry.job_submitted(
            carrier, len(message_ids), job.lane, time.time() - job.received_at
        )
        self._on_events()

    async def finished(
        self, carrier: str, message: OutboundMessage, status: str, code: str, reason: str
    ) -> None:
        job = _stored(message)
        job_id = job.job_id
        failover = self._failover
        if failover is not None and await failover.after_failure(
            carrier, job, status, code, message.accepted
        ):
            return  # queued on its next carrier: no event, not final
        events = self._factory.status(
            job_id,
            status,
            carrier=carrier,
            code=code,
            reason=reason,
            response_topic=job.response_topic,
            correlation_data=job.correlation_data,
            attempts=job.attempts,
        )
        changed = await self._store.finish(job_id, status, events, code=code)
        if changed and self._on_left is not None:
            self._on_left(job_id)
        self._telemetry.job_final(carrier, status)
        log.info("job_finished", carrier=carrier, job_id=job_id, status=status, code=code)
        self._on_events()

    async def cancel(self, job_id: str) -> tuple[JobView | None, bool]:
        """Cancel a job still waiting in its lane: final ``cancelled``, its status event in
        the outbox, in one transaction. The view (None if unknown) and whether it was
        cancelled now (a job claimed, submitted or final is left alone)."""
        view, cancelled = await self._store.cancel_queued(job_id, self._factory.for_view)
        if view is not None and cancelled and view.carrier is not None:
            if self._on_left is not None:
                self._on_left(job_id)
            self._telemetry.job_final(view.carrier, "cancelled")
            self._on_events()
        return view, cancelled

    async def receipt(
        self, carrier: str, job_id: str, part: int, parts: int, receipt: Receipt
    ) -> None:
        final = await self._store.apply_receipt(job_id, part, receipt.state, self._factory.for_view)
        # The receipt's latency is observed by the carrier, which knows when the part
        # was accepted.
        self._telemetry.receipt(carrier, receipt.state)
        if final is not None:
            self._telemetry.job_final(carrier, final)
            self._on_events()

    async def unmatched_receipt(self, carrier: str, receipt: Receipt) -> None:
        payload = encode_event(
            StatusEvent(
                id=receipt.message_id[:64] or "-",
                status=unmatched_status(receipt.state),  # type: ignore[arg-type]
                carrier=carrier,
                error=ErrorInfo(code="unmatched_receipt", reason=f"stat {receipt.state}"),
                at=format_at(time.time()),
            )
        )
        await self._store.add_events([OutboxEvent(self._factory.unmatched_topic, payload)])
        self._telemetry.receipt_unmatched(carrier)
        log.warning(
            "receipt_unmatched", carrier=carrier, message_id=receipt.message_id, state=receipt.state
        )
        self._on_events()

    async def inbound(self, carrier: str, source: str, destination: str, text: str) -> None:
        """Returns once the MO's events are committed (then the SMSC gets its
        deliver_sm_resp). The reply window lookup, the events and what a consent keyword
        changes (the consent, its ``sms/consent`` event, reply jobs) are one transaction."""
        now = time.time()
        mo = self.mo
        make_events = partial(mo.events, carrier, source, destination, text, now)
        plan = (
            None
            if self._consent is None
            else self._consent.plan(carrier, source, destination, text, now)
        )
        if plan is None or (plan.change is None and not plan.replies):
            window = await self._store.add_mo(mo.number(source), now, make_events)
        else:
            window, changed = await self._store.record_mo(
                mo.number(source), now, make_events, plan.change, plan.replies, plan.reply_on_change
            )
            self._consented(carrier, plan, changed)
        self._telemetry.mo_message(carrier)
        if window is not None:
            self._telemetry.reply_matched()
            log.info("reply_matched", carrier=carrier, job_id=window.job_id)
        self._on_events()

    def _consented(self, carrier: str, plan: MoPlan, changed: bool) -> None:
        """Metrics, log and feeder wake-ups for an MO's consent change and replies."""
        if changed and plan.change is not None:
            self._telemetry.consent_change(plan.change.action, "mo")
            log.info(
                "consent_changed",
                carrier=carrier,
                action=plan.change.action,
                keyword=plan.change.keyword,
            )
        for reply in plan.replies + (plan.reply_on_change if changed else []):
            self._telemetry.job_received(reply.lane)
            if self._on_job is not None:
                self._on_job(reply.carrier)

    async def lookup(self, carrier: str, normalized_id: str) -> tuple[str, int, int] | None:
        return await self._store.lookup(carrier, normalized_id)


def _stored(message: OutboundMessage) -> StoredJob:
    """The store's record a carrier's message was made from (``StoredJob.outbound``): it
    travels with the message, so the outcome needs no lookup by id."""
    job = message.context
    if not isinstance(job, StoredJob):
        raise TypeError(f"job {message.job_id!r}: not made by StoredJob.outbound()")
    return job
