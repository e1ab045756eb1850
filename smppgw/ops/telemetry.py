"""Turns what the running gateway reports into Prometheus metrics: the one writer.

:class:`~smppgw.ops.metrics.Metrics` declares the metrics (a plain registry); this module is
the only one that sets, increments or observes them. The SMPP engine
(:mod:`smppgw.engine.carrier`, :mod:`smppgw.smpp.session`), the store and the outbox know
nothing of Prometheus: they call small observers (``CarrierObserver``,
``Store(on_batch=...)``, the outbox's ``on_published``) and :class:`Telemetry` implements
them. The pipeline (intake, outcomes, tenancy) and the gateway's periodic refresh call
:class:`Telemetry` / :class:`TenantTelemetry` methods named for what happened.

Some of these calls happen once per submit_sm. prometheus-client's ``labels(...)`` takes a
lock and hashes the label values on every call, so each carrier's labelled children are
looked up once and kept in a :class:`_CarrierChildren`: an event costs one dict lookup and
one ``inc()`` / ``observe()``. The per-job ones are gathered for the turn and applied at
its end (:mod:`smppgw.ops.tally`): one ``inc(n)`` per child and turn instead of a locked
update per job. Label values stay bounded as in ``metrics.py``: statuses go
through ``status_name``, bind results outside a status fold into ``other``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Counter

from smppgw.config import CarrierConfig, MqttConfig
from smppgw.engine.policy import Action, ErrorPolicy
from smppgw.ops.metrics import (
    BIND_FAILURES,
    CAP_ACTIONS,
    CONSENT_ACTIONS,
    CONSENT_SOURCES,
    HOLD_REASONS,
    LANES,
    MO_REFUSALS,
    RECEIPT_STATES,
    REJECT_REASONS,
    SESSION_STATES,
    Metrics,
)
from smppgw.ops.tally import Tally, check_histogram
from smppgw.smpp.constants import status_name

#: SMPP bind mode → the ``bind`` label of ``smppgw_session_state``.
BIND_LABELS = {"transceiver": "trx", "transmitter": "tx", "receiver": "rx"}


class _Pause:
    """The value of ``smppgw_throttle_backoff_seconds``, computed at scrape time.

    The carrier says "paused for N seconds from now" and says nothing when the pause ends,
    so the gauge reads N until then and 0 afterwards. One tuple, swapped whole: the scrape
    runs in the HTTP server's thread and must never see half an update."""

    __slots__ = ("_pause",)

    def __init__(self) -> None:
        self._pause: tuple[float, float] = (0.0, 0.0)  # (seconds, monotonic end)

    def start(self, seconds: float) -> None:
        self._pause = (seconds, time.monotonic() + seconds)

    def __call__(self) -> float:
        seconds, until = self._pause
        return seconds if time.monotonic() < until else 0.0


class _CarrierChildren:
    """One carrier's metric children, created on its first event."""

    __slots__ = (
        "binds",
        "carrier",
        "config",
        "enquire_link_timeouts",
        "final",
        "malformed",
        "metrics",
        "mo_parts",
        "parts",
        "pause",
        "policy",
        "queue_latency",
        "receipt_latency",
        "receipts",
        "receipts_early",
        "reconnects",
        "responses",
        "retries",
        "states",
        "submit_latency",
        "submit_sm",
        "throttle_wait",
        "timeouts",
    )

    def __init__(self, metrics: Metrics, carrier: str, config: CarrierConfig | None) -> None:
        self.metrics = metrics
        self.carrier = carrier
        self.config = config
        #: Which statuses count as throttling: the carrier's own error policy, the one
        #: the carrier acts on (``error_policy`` may make any status "slow down").
        self.policy = ErrorPolicy(dict(config.error_policy) if config is not None else None)
        self.parts = metrics.parts_submitted.labels(carrier)
        self.queue_latency = tuple(metrics.queue_latency.labels(carrier, lane) for lane in LANES)
        #: final status → jobs_final child
        self.final: dict[str, Any] = {}
        #: receipt state → receipts child
        self.receipts: dict[str, Any] = {}
        self.submit_sm = metrics.submit_sm.labels(carrier)
        self.timeouts = metrics.submit_sm_timeouts.labels(carrier)
        self.retries = metrics.submit_retries.labels(carrier)
        self.receipts_early = metrics.receipts_early.labels(carrier)
        self.receipt_latency = metrics.receipt_latency.labels(carrier)
        self.mo_parts = metrics.mo_parts.labels(carrier)
        self.reconnects = metrics.reconnects.labels(carrier)
        self.malformed = metrics.malformed_pdus.labels(carrier)
        self.enquire_link_timeouts = metrics.enquire_link_timeouts.labels(carrier)
        self.throttle_wait = metrics.throttle_wait.labels(carrier)
        self.submit_latency = metrics.submit_latency.labels(carrier)
        check_histogram(self.submit_latency)
        self.pause = _Pause()
        metrics.throttle_backoff.labels(carrier).set_function(self.pause)
        #: command_status → (submit_sm_resp child, smsc_throttled child or None)
        self.responses: dict[int, tuple[Any, Any]] = {}
        #: bind result (status or failure name) → bind_attempts child
        self.binds: dict[int | str, Any] = {}
        #: (session, bind mode) → session_state children, in SESSION_STATES order
        self.states: dict[tuple[int, str], tuple[Any, ...]] = {}

    def retune(self, config: CarrierConfig | None) -> None:
        """A reload changed the carrier's config: its error policy may have changed."""
        self.config = config
        self.policy = ErrorPolicy(dict(config.error_policy) if config is not None else None)
        self.responses.clear()

    def response(self, status: int) -> tuple[Any, Any]:
        found = self.responses.get(status)
        if found is None:
            name = status_name(status)
            throttled = (
                self.metrics.throttled_responses.labels(self.carrier, name)
                if status and self.policy.classify(status) is Action.THROTTLE
                else None
            )
            found = (self.metrics.submit_sm_resp.labels(self.carrier, name), throttled)
            self.responses[status] = found
        return found

    def final_status(self, status: str) -> Any:
        found = self.final.get(status)
        if found is None:
            found = self.final[status] = self.metrics.jobs_final.labels(self.carrier, status)
        return found

    def receipt(self, state: str) -> Any:
        found = self.receipts.get(state)
        if found is None:
            label = state if state in RECEIPT_STATES else "other"
            found = self.receipts[state] = self.metrics.receipts.labels(self.carrier, label)
        return found

    def bind(self, result: int | str) -> Any:
        found = self.binds.get(result)
        if found is None:
            if isinstance(result, int):
                label = status_name(result)
            else:
                label = result if result in BIND_FAILURES else "other"
            found = self.binds[result] = self.metrics.binds.labels(self.carrier, label)
        return found

    def session_states(self, session: int, mode: str) -> tuple[Any, ...]:
        found = self.states.get((session, mode))
        if found is None:
            bind = BIND_LABELS.get(mode, mode)
            gauge = self.metrics.session_state
            found = tuple(gauge.labels(self.carrier, str(session), bind, s) for s in SESSION_STATES)
            self.states[(session, mode)] = found
        return found


class Telemetry:
    """The gateway's observer of its carriers, store and outbox (one per :class:`Metrics`).

    Implements ``smppgw.engine.carrier.CarrierObserver``; :meth:`store_batch` is the store's
    ``on_batch``; :meth:`events_counter` is the outbox's ``on_published``.
    """

    def __init__(
        self, metrics: Metrics, carriers: Mapping[str, CarrierConfig] | None = None
    ) -> None:
        """``carriers``: the live carrier configs by name (a reload updates the mapping
        in place); each carrier's ``error_policy`` says which statuses are throttling."""
        self.metrics = metrics
        self._configs: Mapping[str, CarrierConfig] = carriers if carriers is not None else {}
        self._carriers: dict[str, _CarrierChildren] = {}
        self._received = tuple(metrics.jobs_received.labels(lane) for lane in LANES)
        self._duplicate = metrics.jobs_duplicate
        #: The per-job updates (submits, responses, receipts, latencies) of a turn.
        self._tally = Tally()
        #: ``smppgw consent``'s totals in the store when last read (None: not yet read).
        self._admin_consent: dict[str, int] | None = None

    def _of(self, carrier: str) -> _CarrierChildren:
        found = self._carriers.get(carrier)
        config = self._configs.get(carrier)
        if found is None:
            found = self._carriers[carrier] = _CarrierChildren(self.metrics, carrier, config)
        elif found.config is not config:
            found.retune(config)
        return found

    def remove_carrier(self, carrier: str) -> None:
        """A reload removed the carrier: drop its series and the children cached here
        (they would no longer be exported; a carrier of the same name added later gets
        fresh ones)."""
        self._carriers.pop(carrier, None)
        self.metrics.remove_carrier(carrier)

    # ------------------------------------------------------------------ CarrierObserver
    def submit_sent(self, carrier: str) -> None:
        self._tally.inc(self._of(carrier).submit_sm)

    def submit_response(self, carrier: str, status: int, latency: float) -> None:
        children = self._of(carrier)
        counted, throttled = children.response(status)
        tally = self._tally
        tally.inc(counted)
        if throttled is not None:
            tally.inc(throttled)
        tally.observe(children.submit_latency, latency)

    def submit_timeout(self, carrier: str) -> None:
        self._of(carrier).timeouts.inc()

    def retry(self, carrier: str) -> None:
        self._of(carrier).retries.inc()

    def receipt_early(self, carrier: str) -> None:
        self._of(carrier).receipts_early.inc()

    def receipt_latency(self, carrier: str, seconds: float) -> None:
        self._tally.observe(self._of(carrier).receipt_latency, seconds)

    def mo_part(self, carrier: str) -> None:
        self._of(carrier).mo_parts.inc()

    def mo_refused(self, carrier: str, reason: str) -> None:
        label = reason if reason in MO_REFUSALS else "busy"
        self.metrics.mo_parts_refused.labels(carrier, label).inc()

    def mo_evicted(self, carrier: str, messages: int) -> None:
        self.metrics.mo_evicted.labels(carrier).inc(messages)

    def throttle_wait(self, carrier: str, seconds: float) -> None:
        self._of(carrier).throttle_wait.observe(seconds)

    def throttle_backoff(self, carrier: str, seconds: float) -> None:
        self._of(carrier).pause.start(seconds)

    # ------------------------------------------------------------------ intake
    def job_received(self, lane: int) -> None:
        """A new job was committed to its lane (0 high, 1 normal, 2 low)."""
        self._tally.inc(self._received[lane])

    def job_duplicate(self) -> None:
        """A job (or rejection) whose id was already known: acknowledged, not sent again."""
        self._duplicate.inc()

    def job_rejected(self, reason: str) -> None:
        self.metrics.job_rejected(reason)

    def cancel(self, result: str) -> None:
        """A cancel from MQTT: ``cancelled``, ``not_cancelled`` or ``invalid``."""
        self.metrics.cancels.labels(result=result).inc()

    def garbage_payload(self) -> None:
        self.metrics.garbage_payloads.inc()

    # ------------------------------------------------------------------ consent
    def consent_change(self, action: str, source: str, changes: int = 1) -> None:
        """A number opted out or in (``source``: ``mo`` or ``admin``)."""
        if action in CONSENT_ACTIONS and source in CONSENT_SOURCES and changes > 0:
            self.metrics.consent_changes.labels(action=action, source=source).inc(changes)

    def consent_totals(self, totals: Mapping[tuple[str, str], int]) -> None:
        """The store's running totals of consent changes: those made by ``smppgw consent``
        (another process) since the last call are counted here. The first call only
        takes the baseline."""
        admin = {action: totals.get((action, "admin"), 0) for action in CONSENT_ACTIONS}
        seen = self._admin_consent
        self._admin_consent = admin
        if seen is not None:
            for action, total in admin.items():
                self.consent_change(action, "admin", total - seen[action])

    def marketing_cap(self, action: str) -> None:
        """A marketing job hit the daily cap: ``reject`` or ``defer``."""
        if action in CAP_ACTIONS:
            self.metrics.marketing_caps.labels(action=action).inc()

    # ------------------------------------------------------------------ outcomes
    def job_submitted(self, carrier: str, parts: int, lane: int, waited: float) -> None:
        """Every part accepted; ``waited``: seconds from intake to now (queue latency)."""
        children = self._of(carrier)
        self._tally.inc(children.parts, parts)
        self._tally.observe(children.queue_latency[lane], max(0.0, waited))

    def failover(self, carrier: str, to: str, reason: str, jobs: int = 1) -> None:
        """``jobs`` moved from ``carrier`` to ``to`` (reason: down, refused, retries)."""
        self.metrics.failovers.labels(carrier, to, reason).inc(jobs)

    def ported_numbers(self, count: int) -> None:
        self.metrics.ported_numbers.set(count)

    def job_final(self, carrier: str, status: str) -> None:
        self._tally.inc(self._of(carrier).final_status(status))

    def receipt(self, carrier: str, state: str) -> None:
        """A matched receipt was recorded (its latency comes from the carrier)."""
        self._tally.inc(self._of(carrier).receipt(state))

    def receipt_unmatched(self, carrier: str) -> None:
        self.metrics.receipts_unmatched.labels(carrier).inc()

    def jobs_held(self, counts: Mapping[str, int]) -> None:
        """Held jobs by reason (the store's counters); a reason with none shows 0."""
        gauge = self.metrics.jobs_held
        for reason in {*HOLD_REASONS, *counts}:
            gauge.labels(reason=reason).set(counts.get(reason, 0))

    def reply_matched(self) -> None:
        """An MO was tied to an open ``expect_reply`` job."""
        self.metrics.replies_matched.inc()

    def mo_message(self, carrier: str) -> None:
        """An inbound message (reassembled) was committed for publishing."""
        self.metrics.mo_messages.labels(carrier).inc()

    # ------------------------------------------------------------------ SessionObserver
    def session_state(self, carrier: str, session: int, bind: str, state: str) -> None:
        if state not in SESSION_STATES:
            state = "closed"
        for name, child in zip(
            SESSION_STATES, self._of(carrier).session_states(session, bind), strict=True
        ):
            child.set(1 if name == state else 0)

    def bind_result(self, carrier: str, result: int | str) -> None:
        self._of(carrier).bind(result).inc()

    def reconnect(self, carrier: str) -> None:
        self._of(carrier).reconnects.inc()

    def malformed_pdu(self, carrier: str) -> None:
        self._of(carrier).malformed.inc()

    def enquire_link_timeout(self, carrier: str) -> None:
        self._of(carrier).enquire_link_timeouts.inc()

    # ------------------------------------------------------------------ store, MQTT
    def store_batch(self, operations: int, seconds: float | None) -> None:
        """The store's ``on_batch``: runs in the writer thread (prometheus-client's
        metrics are thread-safe)."""
        if seconds is None:
            self.metrics.store_errors.inc()
        else:
            self.metrics.store_commit.observe(seconds)
            self.metrics.store_batch.observe(operations)

    def store_state(
        self,
        depths: Mapping[tuple[str, int], int],
        outbox: int,
        dead_events: int,
        size_bytes: int,
    ) -> None:
        """The store's sampled gauges: queue depth per (carrier, lane index), outbox and
        dead events, size on disk."""
        metrics = self.metrics
        metrics.set_queue_depths(
            {(carrier, LANES[lane]): n for (carrier, lane), n in depths.items()}
        )
        metrics.mqtt_outbox_depth.set(outbox)
        metrics.dead_events.set(dead_events)
        metrics.store_size.set(size_bytes)

    def window_in_use(self, carrier: str, slot: int, in_flight: int) -> None:
        """Requests awaiting a response on one bind (``slot`` as in ``init_carrier``)."""
        self.metrics.window_in_use.labels(carrier=carrier, session=str(slot)).set(in_flight)

    def config_reload(self, ok: bool) -> None:
        self.metrics.config_reloads.labels("ok" if ok else "failed").inc()

    def mqtt_connection(self, up: bool, *, connected: bool) -> None:
        """One of the gateway's broker connections changed (its client reports transitions
        only): ``up`` whether all of them are up now, ``connected`` whether this change was
        a connect (counted)."""
        self.metrics.mqtt_connected.set(1 if up else 0)
        if connected:
            self.metrics.mqtt_connects.inc()

    def event_set_aside(self, kind: str) -> None:
        """The outbox set an event aside (``kind``: one of ``SET_ASIDE_KINDS``)."""
        self.metrics.event_set_aside(kind)

    def events_counter(self, mqtt: MqttConfig) -> EventCounter:
        """The outbox's ``on_published``: counts what the broker acknowledged, by kind."""
        return EventCounter(self.metrics, mqtt)


class EventCounter:
    """Counts the events the broker acknowledged, by kind, one outbox round at a time.

    The kind comes from the topic: the inbound topic's subtree is ``inbound``, the rejected
    topic is ``rejected``, the consent topic ``consent``, everything else is a status event
    (``<status_topic>/<id>``, the unmatched-receipt topic, and copies to a job's MQTT 5
    Response Topic). Called with a round's acknowledged topics once its PUBACKs are in: one
    ``inc(n)`` per kind and round instead of a done-callback (a loop callback and a locked
    ``inc``) per event, two per job (issue 13)."""

    __slots__ = (
        "_consent",
        "_consent_topic",
        "_inbound",
        "_inbound_prefix",
        "_rejected",
        "_rejected_topic",
        "_status",
    )

    def __init__(self, metrics: Metrics, mqtt: MqttConfig) -> None:
        inbound = mqtt.inbound_topic.rstrip("/")
        self._inbound_prefix = f"{inbound}/"
        self._rejected_topic = mqtt.rejected_topic
        self._status = metrics.events_published.labels("status")
        self._inbound = metrics.events_published.labels("inbound")
        self._rejected = metrics.events_published.labels("rejected")
        self._consent_topic = mqtt.consent_topic
        self._consent = metrics.events_published.labels("consent")

    def __call__(self, topics: Iterable[str]) -> None:
        counts: dict[Counter, int] = {}
        for topic in topics:
            counter = self._counter(topic)
            counts[counter] = counts.get(counter, 0) + 1
        for counter, n in counts.items():
            counter.inc(n)

    def _counter(self, topic: str) -> Counter:
        if topic.startswith(self._inbound_prefix):
            return self._inbound
        if topic == self._rejected_topic:
            return self._rejected
        if topic == self._consent_topic:
            return self._consent
        return self._status


class TenantTelemetry:
    """Per-tenant series; the ``tenant`` label is only ever a configured name or
    ``default``: an unknown topic level is counted without a label."""

    def __init__(self, metrics: Metrics) -> None:
        self.received = metrics.tenant_received
        self.rejected = metrics.tenant_rejected
        self.parts = metrics.tenant_parts
        self.waiting = metrics.tenant_waiting
        self.held = metrics.tenant_held
        self.unknown = metrics.tenant_unknown
        #: Handlers held per tenant right now (the gauge's value, for ``smppgw ctl status``).
        self.holding: dict[str, int] = {}

    def init(self, names: Iterable[str]) -> None:
        for name in names:
            for child in (self.received, self.parts, self.waiting, self.held):
                child.labels(tenant=name)

    def rejected_job(self, tenant: str, reason: str) -> None:
        reason = reason if reason in REJECT_REASONS else "other"
        self.rejected.labels(tenant=tenant, reason=reason).inc()

    def received_job(self, tenant: str, parts: int) -> None:
        self.received.labels(tenant=tenant).inc()
        self.parts.labels(tenant=tenant).inc(parts)

    def unknown_topic(self) -> None:
        self.unknown.inc()

    def hold(self, tenant: str, delta: int) -> None:
        """A handler started (+1) or stopped (-1) waiting for the tenant's rate or room."""
        self.held.labels(tenant=tenant).inc(delta)
        self.holding[tenant] = self.holding.get(tenant, 0) + delta

    def show_waiting(self, tenant: str, waiting: int) -> None:
        self.waiting.labels(tenant=tenant).set(waiting)
