"""Turns what the running engine reports into Prometheus metrics.

The SMPP engine (:mod:`smppgw.carrier`, :mod:`smppgw.smpp.session`), the store and the
outbox know nothing of Prometheus: they call small observers (``CarrierObserver``,
``Store(on_batch=...)``, the ``Publisher`` protocol) and :class:`Telemetry` implements
them on top of :class:`~smppgw.metrics.Metrics`, which stays a plain registry.

Some of these calls happen once per submit_sm. prometheus-client's ``labels(...)`` takes a
lock and hashes the label values on every call, so each carrier's labelled children are
looked up once and kept in a :class:`_CarrierChildren`: an event costs one dict lookup and
one ``inc()`` / ``observe()``. Label values stay bounded as in ``metrics.py``: statuses go
through ``status_name``, bind results outside a status fold into ``other``.
"""

from __future__ import annotations

import time
from typing import Any

from smppgw.metrics import BIND_FAILURES, MO_REFUSALS, SESSION_STATES, Metrics
from smppgw.outbox import Publisher
from smppgw.settings import MqttConfig
from smppgw.smpp.constants import status_name

#: SMPP bind mode → the ``bind`` label of ``smppgw_session_state``.
BIND_LABELS = {"transceiver": "trx", "transmitter": "tx", "receiver": "rx"}

#: command_status names that mean "slow down" (also counted in smppgw_smsc_throttled_total).
_THROTTLING = frozenset({"ESME_RTHROTTLED", "ESME_RMSGQFUL"})


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
        "enquire_link_timeouts",
        "malformed",
        "metrics",
        "mo_parts",
        "pause",
        "receipt_latency",
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

    def __init__(self, metrics: Metrics, carrier: str) -> None:
        self.metrics = metrics
        self.carrier = carrier
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
        self.pause = _Pause()
        metrics.throttle_backoff.labels(carrier).set_function(self.pause)
        #: command_status → (submit_sm_resp child, smsc_throttled child or None)
        self.responses: dict[int, tuple[Any, Any]] = {}
        #: bind result (status or failure name) → bind_attempts child
        self.binds: dict[int | str, Any] = {}
        #: (session, bind mode) → session_state children, in SESSION_STATES order
        self.states: dict[tuple[int, str], tuple[Any, ...]] = {}

    def response(self, status: int) -> tuple[Any, Any]:
        found = self.responses.get(status)
        if found is None:
            name = status_name(status)
            throttled = (
                self.metrics.throttled_responses.labels(self.carrier, name)
                if name in _THROTTLING
                else None
            )
            found = (self.metrics.submit_sm_resp.labels(self.carrier, name), throttled)
            self.responses[status] = found
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

    Implements ``smppgw.carrier.CarrierObserver``; :meth:`store_batch` is the store's
    ``on_batch``; :meth:`publisher` wraps the MQTT client the outbox publishes through.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._carriers: dict[str, _CarrierChildren] = {}

    def _of(self, carrier: str) -> _CarrierChildren:
        found = self._carriers.get(carrier)
        if found is None:
            found = self._carriers[carrier] = _CarrierChildren(self.metrics, carrier)
        return found

    def remove_carrier(self, carrier: str) -> None:
        """A reload removed the carrier: drop its series and the children cached here
        (they would no longer be exported; a carrier of the same name added later gets
        fresh ones)."""
        self._carriers.pop(carrier, None)
        self.metrics.remove_carrier(carrier)

    # ------------------------------------------------------------------ CarrierObserver
    def submit_sent(self, carrier: str) -> None:
        self._of(carrier).submit_sm.inc()

    def submit_response(self, carrier: str, status: int, latency: float) -> None:
        children = self._of(carrier)
        counted, throttled = children.response(status)
        counted.inc()
        if throttled is not None:
            throttled.inc()
        children.submit_latency.observe(latency)

    def submit_timeout(self, carrier: str) -> None:
        self._of(carrier).timeouts.inc()

    def retry(self, carrier: str) -> None:
        self._of(carrier).retries.inc()

    def receipt_early(self, carrier: str) -> None:
        self._of(carrier).receipts_early.inc()

    def receipt_latency(self, carrier: str, seconds: float) -> None:
        self._of(carrier).receipt_latency.observe(seconds)

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

    def mqtt_connection(self, connected: bool) -> None:
        """The MQTT client's connection changed (it reports transitions only)."""
        self.metrics.mqtt_connected.set(1 if connected else 0)
        if connected:
            self.metrics.mqtt_connects.inc()

    def event_set_aside(self, kind: str) -> None:
        """The outbox set an event aside (``kind``: one of ``SET_ASIDE_KINDS``)."""
        self.metrics.event_set_aside(kind)

    def publisher(self, inner: Publisher, mqtt: MqttConfig) -> CountingPublisher:
        """``inner`` (the MQTT client), counting each publication the broker acknowledged."""
        return CountingPublisher(inner, self.metrics, mqtt)


class CountingPublisher:
    """A ``Publisher`` for the outbox that counts acknowledged events by kind.

    The kind comes from the topic: the inbound topic's subtree is ``inbound``, the rejected
    topic is ``rejected``, everything else is a status event (``<status_topic>/<id>``, the
    unmatched-receipt topic, and copies to a job's MQTT 5 Response Topic)."""

    __slots__ = ("_inbound", "_inbound_prefix", "_inner", "_rejected", "_rejected_topic", "_status")

    def __init__(self, inner: Publisher, metrics: Metrics, mqtt: MqttConfig) -> None:
        self._inner = inner
        inbound = mqtt.inbound_topic.rstrip("/")
        self._inbound_prefix = f"{inbound}/"
        self._rejected_topic = mqtt.rejected_topic
        self._status = metrics.events_published.labels("status")
        self._inbound = metrics.events_published.labels("inbound")
        self._rejected = metrics.events_published.labels("rejected")

    @property
    def connected(self) -> bool:
        return self._inner.connected

    @property
    def max_packet_size(self) -> int | None:
        return self._inner.max_packet_size

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, correlation_data: bytes | None = None
    ) -> None:
        await self._inner.publish(topic, payload, qos=qos, correlation_data=correlation_data)
        if topic.startswith(self._inbound_prefix):
            self._inbound.inc()
        elif topic == self._rejected_topic:
            self._rejected.inc()
        else:
            self._status.inc()
