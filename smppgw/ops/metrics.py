"""Prometheus metrics: one registry, label values from small known sets.

Every metric lives in a registry owned by one :class:`Metrics` object rather than in the
process-wide default registry, so tests (and a test that runs two gateways) can create as
many as they like without "duplicated timeseries" errors.

Label values are always drawn from small, known sets: carrier names from the config,
session indexes, priority lanes, command_status *names* (``status_name`` folds vendor codes),
receipt states and the reason enums below. Never a job id, a number, a message id or a text:
one label value per message would make every scrape grow without bound and take the
Prometheus server down with it. Helpers such as :meth:`Metrics.job_rejected` fold anything
unexpected into ``"other"`` so a caller's typo cannot create a new series per message.

They are served over HTTP, with /healthz and /readyz, by :mod:`smppgw.ops.http`.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from smppgw.config import CarrierConfig
from smppgw.ops.http import DROP_REASONS
from smppgw.outcome import RECEIPT_STATES as RECEIPT_MEANINGS

#: Why a job was refused before any submit_sm (the ``reason`` label of jobs_rejected).
REJECT_REASONS = (
    "invalid",  # schema or field validation failed
    "too_large",  # payload over mqtt.max_payload
    "no_route",  # no carrier prefix matches the destination
    "unknown_carrier",  # ``carrier`` names no configured carrier
    "too_long",  # the text needs more than max_parts parts
    "unencodable",  # not representable in the carrier's forced coding
    "expired",  # ttl passed before it could be queued
    "store_full",  # the store refused the write (disk full, locked)
    "sender_not_allowed",  # a tenant's ``from`` outside its senders
    "priority_not_allowed",  # a tenant's priority outside its priorities
    "quota_exceeded",  # a tenant's daily_parts would be exceeded
    "opted_out",  # a marketing job to a number that opted out
    "frequency_cap",  # a marketing job over consent.marketing_daily_cap (cap_action reject)
    "other",
)

#: Session (bind) life-cycle states for ``smppgw_session_state``.
SESSION_STATES = ("connecting", "binding", "bound", "unbinding", "closed")

#: Receipt ``stat:`` values of SMPP 3.4 appendix B; anything else counts as ``other``.
RECEIPT_STATES = (*RECEIPT_MEANINGS, "other")

#: Priority lanes, as the ``lane`` label.
LANES = ("high", "normal", "low")

#: Outcome of a bind attempt that is not a bind_*_resp status (the ``result`` label).
BIND_FAILURES = ("connect_error", "timeout", "closed")

#: Why an MO part was refused (the ``reason`` label of mo_parts_refused).
MO_REFUSALS = ("too_large", "busy")

#: Results of a ``smppgw ctl`` request (the ``result`` label of ctl_requests).
CTL_RESULTS = ("ok", "refused", "invalid", "failed")
#: Why a job is held (the ``reason`` label of jobs_held): ``send_at``; ``window`` and
#: ``cap`` are the marketing rules' (``smppgw.pipeline.holds.HoldReason``).
HOLD_REASONS = ("send_at", "window", "cap")
#: What became of a cancel from MQTT (the ``result`` label of cancels_total).
CANCEL_RESULTS = ("cancelled", "not_cancelled", "invalid")

#: Kinds of MQTT publications (the ``kind`` label of events_published).
EVENT_KINDS = ("status", "inbound", "rejected", "consent")
#: Consent changes: the ``action`` and ``source`` labels of consent_changes.
CONSENT_ACTIONS = ("opt_out", "opt_in")
CONSENT_SOURCES = ("mo", "admin")
#: What the daily marketing cap did (the ``action`` label of marketing_caps).
CAP_ACTIONS = ("reject", "defer")

#: Why the outbox set an event aside (the ``reason`` label of events_set_aside).
SET_ASIDE_REASONS = (
    "invalid_topic",  # not a valid MQTT topic name (wildcard, control character, ...)
    "too_large",  # over the broker's Maximum Packet Size
    "refused",  # PUBACK reason code >= 0x80 (not authorized, quota exceeded, ...)
    "disconnect",  # the broker closed the connection each time it was published alone
    "other",
)

# Buckets, in seconds. An SMSC answers a submit_sm in milliseconds to seconds (response
# timeouts are ~10 s); the queue wait ranges from nothing to minutes under a backlog;
# receipts come back in seconds for a phone that is on, hours for one that is off.
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                 30.0, 60.0)  # fmt: skip
_QUEUE_BUCKETS = (*_FAST_BUCKETS, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_RECEIPT_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                    7200.0, 14400.0, 43200.0, 86400.0, 172800.0)  # fmt: skip
_COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0, 2.5, 5.0)  # fmt: skip


def _bounded(value: str, allowed: Iterable[str]) -> str:
    return value if value in allowed else "other"


class Metrics:
    """Every smppgw metric, registered in a private :class:`CollectorRegistry`.

    The attributes are plain prometheus-client metrics (``.labels(...).inc()`` etc.); the
    helper methods exist where a label value must be folded into a bounded set.
    """

    def __init__(self, *, version: str | None = None, process_metrics: bool = True) -> None:
        # ``*_created`` gauges double the series count for a timestamp nobody alerts on
        # (Prometheus uses it only for OpenMetrics start times); process-wide switch.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        if process_metrics:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

        # --- intake --------------------------------------------------------------------
        self.jobs_received = Counter(
            "smppgw_jobs_received_total",
            "Jobs taken from MQTT and committed to the store (duplicates not included).",
            ["lane"],
            registry=r,
        )
        self.jobs_duplicate = Counter(
            "smppgw_jobs_duplicate_total",
            "Jobs whose id was already known: acknowledged, not sent again.",
            registry=r,
        )
        self.jobs_rejected = Counter(
            "smppgw_jobs_rejected_total",
            "Jobs refused before any submit_sm, by reason (published as status rejected).",
            ["reason"],
            registry=r,
        )
        self.cancels = Counter(
            "smppgw_cancels_total",
            "Cancels taken from MQTT, by result (invalid: no usable id in the payload).",
            ["result"],
            registry=r,
        )
        self.jobs_held = Gauge(
            "smppgw_jobs_held",
            "Jobs held (status scheduled) until a time, by reason (send_at, window, cap).",
            ["reason"],
            registry=r,
        )
        for reason in HOLD_REASONS:
            self.jobs_held.labels(reason=reason)
        self.replies_matched = Counter(
            "smppgw_replies_matched_total",
            "MO messages tied to an open expect_reply job (published with in_reply_to).",
            registry=r,
        )
        self.garbage_payloads = Counter(
            "smppgw_garbage_payloads_total",
            "MQTT payloads that were not a job at all (not JSON, no usable id): dropped.",
            registry=r,
        )
        self.consent_changes = Counter(
            "smppgw_consent_changes_total",
            "Consent changes recorded, by action (opt_out, opt_in) and source (mo: a keyword"
            " or first MO from the number; admin: smppgw consent).",
            ["action", "source"],
            registry=r,
        )
        self.marketing_caps = Counter(
            "smppgw_marketing_caps_total",
            "Marketing jobs over consent.marketing_daily_cap, by action (reject, defer).",
            ["action"],
            registry=r,
        )
        self.failovers = Counter(
            "smppgw_failovers_total",
            "Jobs moved to the next carrier of their chain, by reason (down: no bind for "
            "failover_after, or paused; refused: a failover_on status; retries: transient "
            "retries exhausted).",
            ["from", "to", "reason"],
            registry=r,
        )
        self.ported_numbers = Gauge(
            "smppgw_ported_numbers",
            "Number-to-carrier mappings in the ported-number cache (learned, imported, "
            "from routing.ported_file), expired ones not counted.",
            registry=r,
        )
        self.jobs_final = Counter(
            "smppgw_jobs_final_total",
            "Jobs that reached a final status, by carrier and status.",
            ["carrier", "status"],
            registry=r,
        )

        # --- tenants (the ``tenant`` label is a configured name or ``default``) --------
        self.tenant_received = Counter(
            "smppgw_tenant_jobs_received_total",
            "Jobs taken in and queued, by tenant (duplicates and rejections not included).",
            ["tenant"],
            registry=r,
        )
        self.tenant_rejected = Counter(
            "smppgw_tenant_jobs_rejected_total",
            "Jobs refused at intake, by tenant and reason.",
            ["tenant", "reason"],
            registry=r,
        )
        self.tenant_parts = Counter(
            "smppgw_tenant_parts_total",
            "SMS parts of the jobs taken in, by tenant (what daily_parts counts).",
            ["tenant"],
            registry=r,
        )
        self.tenant_waiting = Gauge(
            "smppgw_tenant_waiting",
            "Jobs not yet submitted or final, by tenant (what max_queued limits).",
            ["tenant"],
            registry=r,
        )
        self.tenant_held = Gauge(
            "smppgw_tenant_held",
            "Jobs held without PUBACK by rate pacing or max_queued, by tenant.",
            ["tenant"],
            registry=r,
        )
        self.tenant_unknown = Counter(
            "smppgw_tenant_unknown_total",
            "Jobs published on a submit topic level that names no configured tenant.",
            registry=r,
        )

        # --- submit path ---------------------------------------------------------------
        self.submit_sm = Counter(
            "smppgw_submit_sm_total",
            "submit_sm PDUs sent, one per message part, retries included.",
            ["carrier"],
            registry=r,
        )
        self.submit_sm_resp = Counter(
            "smppgw_submit_sm_resp_total",
            "submit_sm_resp received, by carrier and command_status name.",
            ["carrier", "command_status"],
            registry=r,
        )
        self.submit_sm_timeouts = Counter(
            "smppgw_submit_sm_timeouts_total",
            "submit_sm that got no response within response_timeout (outcome unknown).",
            ["carrier"],
            registry=r,
        )
        self.parts_submitted = Counter(
            "smppgw_parts_submitted_total",
            "Message parts accepted by the SMSC (ESME_ROK), one per SMS charged.",
            ["carrier"],
            registry=r,
        )
        self.submit_retries = Counter(
            "smppgw_submit_retries_total",
            "Parts re-queued after a transient error or throttling.",
            ["carrier"],
            registry=r,
        )

        # --- receipts and MO -----------------------------------------------------------
        self.receipts = Counter(
            "smppgw_receipts_total",
            "Delivery receipts received, by carrier and receipt state.",
            ["carrier", "state"],
            registry=r,
        )
        self.receipts_unmatched = Counter(
            "smppgw_receipts_unmatched_total",
            "Receipts whose message id matched no submitted part, even after holding them.",
            ["carrier"],
            registry=r,
        )
        self.receipts_early = Counter(
            "smppgw_receipts_early_total",
            "Receipts that arrived before their submit_sm_resp and were held for matching.",
            ["carrier"],
            registry=r,
        )
        self.mo_messages = Counter(
            "smppgw_mo_messages_total",
            "Inbound (MO) messages published, concatenated parts counted once.",
            ["carrier"],
            registry=r,
        )
        self.mo_parts = Counter(
            "smppgw_mo_parts_total",
            "Inbound (MO) deliver_sm/data_sm received, one per part.",
            ["carrier"],
            registry=r,
        )
        self.mo_parts_refused = Counter(
            "smppgw_mo_parts_refused_total",
            "MO parts not taken for reassembly: too_large (answered ESME_RINVMSGLEN) or "
            "busy (reassembly memory full, ESME_RX_T_APPN: the SMSC delivers it again).",
            ["carrier", "reason"],
            registry=r,
        )
        self.mo_evicted = Counter(
            "smppgw_mo_evicted_total",
            "Incomplete MO messages published partial early to keep reassembly memory bounded.",
            ["carrier"],
            registry=r,
        )

        # --- sessions ------------------------------------------------------------------
        self.session_state = Gauge(
            "smppgw_session_state",
            "1 for the current state of each bind, 0 for the others.",
            ["carrier", "session", "bind", "state"],
            registry=r,
        )
        self.binds = Counter(
            "smppgw_bind_attempts_total",
            "Bind attempts by result: a bind_resp command_status name or a transport failure.",
            ["carrier", "result"],
            registry=r,
        )
        self.reconnects = Counter(
            "smppgw_reconnects_total",
            "Binds lost (closed, timed out, unbound by the SMSC) and scheduled to reconnect.",
            ["carrier"],
            registry=r,
        )
        self.window_in_use = Gauge(
            "smppgw_window_in_use",
            "Requests awaiting a response on a bind (compare with the carrier's window).",
            ["carrier", "session"],
            registry=r,
        )
        self.malformed_pdus = Counter(
            "smppgw_malformed_pdus_total",
            "PDUs from the SMSC that could not be decoded (nacked or connection closed).",
            ["carrier"],
            registry=r,
        )
        self.enquire_link_timeouts = Counter(
            "smppgw_enquire_link_timeouts_total",
            "enquire_link without a response: the bind is considered dead.",
            ["carrier"],
            registry=r,
        )

        # --- scheduling and throttling -------------------------------------------------
        self.queue_depth = Gauge(
            "smppgw_queue_depth",
            "Parts waiting in the store to be submitted, by carrier and priority lane.",
            ["carrier", "lane"],
            registry=r,
        )
        self.throttle_wait = Histogram(
            "smppgw_throttle_wait_seconds",
            "Time a submit waited for the carrier's TPS token bucket.",
            ["carrier"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.throttled_responses = Counter(
            "smppgw_smsc_throttled_total",
            "SMSC responses the carrier's error_policy treats as throttling (by default"
            " ESME_RTHROTTLED / ESME_RMSGQFUL).",
            ["carrier", "command_status"],
            registry=r,
        )
        self.throttle_backoff = Gauge(
            "smppgw_throttle_backoff_seconds",
            "Current back-off pause after SMSC throttling; 0 when the carrier is not paused.",
            ["carrier"],
            registry=r,
        )
        self.tps_limit = Gauge(
            "smppgw_tps_limit",
            "Configured submit_sm per second for the carrier account (all sessions together).",
            ["carrier"],
            registry=r,
        )

        # --- latencies -----------------------------------------------------------------
        self.queue_latency = Histogram(
            "smppgw_queue_latency_seconds",
            "From job received (committed) to its first submit_sm, by carrier and lane.",
            ["carrier", "lane"],
            buckets=_QUEUE_BUCKETS,
            registry=r,
        )
        self.submit_latency = Histogram(
            "smppgw_submit_response_seconds",
            "From submit_sm sent to its submit_sm_resp.",
            ["carrier"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.receipt_latency = Histogram(
            "smppgw_receipt_latency_seconds",
            "From submit_sm accepted to its delivery receipt.",
            ["carrier"],
            buckets=_RECEIPT_BUCKETS,
            registry=r,
        )

        # --- store ---------------------------------------------------------------------
        self.store_commit = Histogram(
            "smppgw_store_commit_seconds",
            "Duration of one SQLite group commit.",
            buckets=_COMMIT_BUCKETS,
            registry=r,
        )
        self.store_batch = Histogram(
            "smppgw_store_commit_writes",
            "Writes grouped in one SQLite commit.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.store_size = Gauge(
            "smppgw_store_size_bytes",
            "Size of the SQLite database and its WAL on disk.",
            registry=r,
        )
        self.store_errors = Counter(
            "smppgw_store_errors_total",
            "Failed store commits (disk full, database locked); intake pauses meanwhile.",
            registry=r,
        )

        # --- MQTT ----------------------------------------------------------------------
        self.mqtt_connected = Gauge(
            "smppgw_mqtt_connected",
            "1 while connected to the MQTT broker.",
            registry=r,
        )
        self.mqtt_connects = Counter(
            "smppgw_mqtt_connects_total",
            "Successful connections to the MQTT broker (more than one means reconnects).",
            registry=r,
        )
        self.mqtt_outbox_depth = Gauge(
            "smppgw_mqtt_outbox_depth",
            "Events committed to the store and not yet acknowledged by the broker.",
            registry=r,
        )
        self.events_published = Counter(
            "smppgw_events_published_total",
            "Events acknowledged by the broker, by kind (status, inbound, rejected, consent).",
            ["kind"],
            registry=r,
        )
        self.events_set_aside = Counter(
            "smppgw_events_set_aside_total",
            "Events the broker would not take, moved out of the outbox to dead_events, by"
            " reason (invalid_topic, too_large, refused, disconnect).",
            ["reason"],
            registry=r,
        )
        self.dead_events = Gauge(
            "smppgw_dead_events",
            "Events set aside in the store (smppgw dead-events lists them).",
            registry=r,
        )

        # --- process -------------------------------------------------------------------
        self.config_reloads = Counter(
            "smppgw_config_reloads_total",
            "SIGHUP reloads, by result (ok, failed: the old config stays).",
            ["result"],
            registry=r,
        )
        self.ctl_requests = Counter(
            "smppgw_ctl_requests_total",
            "smppgw ctl requests, by result (ok, refused: uid not allowed, invalid: not a "
            "request this gateway knows, failed: a known request that could not be done).",
            ["result"],
            registry=r,
        )
        self.http_dropped = Counter(
            "smppgw_http_connections_dropped_total",
            "Connections to this HTTP endpoint closed unanswered: over_cap (more than 64 "
            "open), timeout (not done 5 s after connecting), malformed (request head too big).",
            ["reason"],
            registry=r,
        )
        self.heartbeat_age = Gauge(
            "smppgw_heartbeat_age_seconds",
            "Seconds since the event loop last ran its heartbeat (> 5 means it is stuck).",
            registry=r,
        )
        self.build_info = Info(
            "smppgw_build",
            "smppgw version and runtime; the value is always 1.",
            registry=r,
        )
        self.build_info.info(
            {
                "version": version if version is not None else _package_version(),
                "python": platform.python_version(),
                "implementation": platform.python_implementation(),
            }
        )
        for result in ("ok", "failed"):
            self.config_reloads.labels(result=result)
        for result in CTL_RESULTS:
            self.ctl_requests.labels(result=result)
        for result in CANCEL_RESULTS:
            self.cancels.labels(result=result)
        for kind in EVENT_KINDS:
            self.events_published.labels(kind=kind)
        for reason in SET_ASIDE_REASONS:
            self.events_set_aside.labels(reason=reason)
        for lane in LANES:
            self.jobs_received.labels(lane=lane)
        for action in CONSENT_ACTIONS:
            for source in CONSENT_SOURCES:
                self.consent_changes.labels(action=action, source=source)
        for action in CAP_ACTIONS:
            self.marketing_caps.labels(action=action)
        for reason in REJECT_REASONS:
            self.jobs_rejected.labels(reason=reason)
        for reason in DROP_REASONS:
            self.http_dropped.labels(reason=reason)

    # --- helpers that keep label values bounded -----------------------------------------

    def init_carrier(self, name: str, sessions: int = 1, tps: float | None = None) -> None:
        """Create a carrier's series at zero so dashboards and rate() see them from the start."""
        for child in (
            self.submit_sm,
            self.submit_sm_timeouts,
            self.parts_submitted,
            self.submit_retries,
            self.receipts_unmatched,
            self.receipts_early,
            self.mo_messages,
            self.mo_parts,
            self.reconnects,
            self.malformed_pdus,
            self.enquire_link_timeouts,
            self.throttle_wait,
            self.throttle_backoff,
            self.submit_latency,
            self.receipt_latency,
            self.mo_evicted,
        ):
            child.labels(carrier=name)
        self.submit_sm_resp.labels(carrier=name, command_status="ESME_ROK")
        for reason in MO_REFUSALS:
            self.mo_parts_refused.labels(carrier=name, reason=reason)
        for lane in LANES:
            self.queue_depth.labels(carrier=name, lane=lane)
            self.queue_latency.labels(carrier=name, lane=lane)
        for index in range(sessions):
            self.window_in_use.labels(carrier=name, session=str(index))
        if tps is not None:
            self.tps_limit.labels(carrier=name).set(tps)

    def init_carriers(self, carriers: Iterable[CarrierConfig]) -> None:
        """:meth:`init_carrier` for each configured carrier (names, sessions, TPS only)."""
        for carrier in carriers:
            self.init_carrier(carrier.name, carrier.sessions, carrier.tps)

    def event_set_aside(self, reason: str) -> None:
        self.events_set_aside.labels(reason=_bounded(reason, SET_ASIDE_REASONS)).inc()

    def job_rejected(self, reason: str) -> None:
        self.jobs_rejected.labels(reason=_bounded(reason, REJECT_REASONS)).inc()

    def remove_carrier(self, name: str) -> None:
        """Forget a carrier removed by a reload, so its series stop reporting stale values."""
        for metric in vars(self).values():
            if isinstance(metric, Counter | Gauge | Histogram) and "carrier" in metric._labelnames:
                for labels in _label_sets(metric):
                    if labels["carrier"] == name:
                        metric.remove(*labels.values())

    def set_queue_depths(self, depths: Mapping[tuple[str, str], int]) -> None:
        """Set every (carrier, lane) depth from one store query; series not in it become 0."""
        seen = set()
        for (carrier, lane), depth in depths.items():
            key = (carrier, _bounded(lane, LANES))
            self.queue_depth.labels(carrier=key[0], lane=key[1]).set(depth)
            seen.add(key)
        for labels in _label_sets(self.queue_depth):
            key = (labels["carrier"], labels["lane"])
            if key not in seen:
                self.queue_depth.labels(**labels).set(0)

    def exposition(self) -> bytes:
        """The text format, as a scrape would see it (for tests)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def _label_sets(metric: Any) -> list[dict[str, str]]:
    """The label sets a metric currently has children for (prometheus-client keeps them)."""
    names: tuple[str, ...] = metric._labelnames
    with metric._lock:
        keys = list(metric._metrics)
    return [dict(zip(names, key, strict=True)) for key in keys]


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smppgw")
    except PackageNotFoundError:
        return "unknown"
