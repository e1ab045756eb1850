"""What a carrier reports, and to whom: the protocols the carrier calls, and its counters.

:class:`CarrierEvents` carries outcomes (implemented by the pipeline, each coroutine durable
before it returns); :class:`CarrierObserver` carries metrics (implemented by
:mod:`smppgw.ops.telemetry`). They live apart from the carrier so that the engine's parts
(lanes, results, receipts, MO) can name them without importing the carrier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from smppgw.engine.message import OutboundMessage
from smppgw.smpp.receipt import Receipt
from smppgw.smpp.session import SessionObserver, Unobserved


class CarrierEvents(Protocol):
    """Implemented by the gateway; each coroutine returns only once its effect is durable."""

    async def sending(self, carrier: str, job_ids: list[str]) -> None:
        """These jobs' first submit_sm may be written once this returns: record it
        durably, so that after a crash their outcome is known to be unknown (and they
        are not sent twice). Called once per job, in batches, ahead of the sends."""

    async def submitted(
        self, carrier: str, message: OutboundMessage, message_ids: list[str], keys: list[str]
    ) -> None:
        """Every part accepted; ids in part order, as the SMSC wrote them, and ``keys``
        the same ids normalised (``submit_id_base``) as receipts are matched. ``message``
        is the one :meth:`Carrier.submit` took (its ``context`` comes back with it)."""

    async def finished(
        self, carrier: str, message: OutboundMessage, status: str, code: str, reason: str
    ) -> None:
        """status: rejected | failed | expired; code: ESME_* name, ttl, text,
        unknown_outcome, retries_exhausted, shutdown, encode."""

    async def receipt(
        self, carrier: str, job_id: str, part: int, parts: int, receipt: Receipt
    ) -> None:
        """A matched receipt (``part`` is 0-based); return = durable → deliver_sm_resp."""

    async def unmatched_receipt(self, carrier: str, receipt: Receipt) -> None:
        """No job for this receipt after ``receipt_hold`` seconds."""

    async def inbound(self, carrier: str, source: str, destination: str, text: str) -> None:
        """An MO message, reassembled when it came in parts."""

    async def lookup(self, carrier: str, normalized_id: str) -> tuple[str, int, int] | None:
        """(job_id, part, parts), part 0-based, for an id not in memory (e.g. submitted
        before a restart)."""


class CarrierObserver(SessionObserver, Protocol):
    """What the carrier (and its binds) report for metrics; see :mod:`smppgw.ops.telemetry`.

    Keeps this engine free of any metrics library. Called on the event loop, some methods
    once per submit_sm: they must be cheap and must not raise.
    """

    def submit_sent(self, carrier: str) -> None:
        """A submit_sm was written (one per part, retries included)."""

    def submit_response(self, carrier: str, status: int, latency: float) -> None:
        """Its submit_sm_resp came, ``latency`` seconds after the submit_sm was written."""

    def submit_timeout(self, carrier: str) -> None:
        """No submit_sm_resp (timeout, or the bind went with it in the window)."""

    def retry(self, carrier: str) -> None:
        """A part went back to be sent again (transient error, throttling, resend)."""

    def receipt_early(self, carrier: str) -> None:
        """A receipt matched no known id yet and is held for its submit_sm_resp."""

    def receipt_latency(self, carrier: str, seconds: float) -> None:
        """A receipt matched a part this process saw accepted, this long after."""

    def mo_part(self, carrier: str) -> None:
        """An MO deliver_sm / data_sm arrived (one per part)."""

    def mo_refused(self, carrier: str, reason: str) -> None:
        """An MO part was not taken for reassembly: ``too_large`` (answered
        ESME_RINVMSGLEN) or ``busy`` (reassembly memory full; ESME_RX_T_APPN, delivered
        again later)."""

    def mo_evicted(self, carrier: str, messages: int) -> None:
        """Incomplete MO messages delivered partial early to keep reassembly bounded."""

    def throttle_wait(self, carrier: str, seconds: float) -> None:
        """The next submit waited this long for a token of the carrier's TPS limit."""

    def throttle_backoff(self, carrier: str, seconds: float) -> None:
        """SMSC throttling: the carrier sends nothing for ``seconds`` from now."""


class _Unobserved(Unobserved):
    """The default :class:`CarrierObserver`: reports nothing."""

    def submit_sent(self, carrier: str) -> None:
        pass

    def submit_response(self, carrier: str, status: int, latency: float) -> None:
        pass

    def submit_timeout(self, carrier: str) -> None:
        pass

    def retry(self, carrier: str) -> None:
        pass

    def receipt_early(self, carrier: str) -> None:
        pass

    def receipt_latency(self, carrier: str, seconds: float) -> None:
        pass

    def mo_part(self, carrier: str) -> None:
        pass

    def mo_refused(self, carrier: str, reason: str) -> None:
        pass

    def mo_evicted(self, carrier: str, messages: int) -> None:
        pass

    def throttle_wait(self, carrier: str, seconds: float) -> None:
        pass

    def throttle_backoff(self, carrier: str, seconds: float) -> None:
        pass


UNOBSERVED: CarrierObserver = _Unobserved()


@dataclass(slots=True)
class CarrierStats:
    """Counters since start (the gauges are computed in :meth:`Carrier.stats`)."""

    submit_sm_sent: int = 0
    submit_sm_accepted: int = 0
    submit_sm_rejected: int = 0
    submit_sm_transient: int = 0
    submit_sm_throttled: int = 0
    submit_sm_unknown: int = 0
    throttle_pauses: int = 0
    throttle_wait_seconds: float = 0.0
    retries: int = 0
    jobs_submitted: int = 0
    jobs_rejected: int = 0
    jobs_failed: int = 0
    jobs_expired: int = 0
    receipts_matched: int = 0
    receipts_unmatched: int = 0
    receipts_held: int = 0
    #: Receipts answered ESME_RX_T_APPN because their job's outcome was not durable yet.
    receipts_deferred: int = 0
    receipts_unreadable: int = 0
    mo_messages: int = 0
    mo_parts: int = 0
    #: MO parts refused: larger than a part may be, or reassembly memory full.
    mo_parts_refused: int = 0
    #: Incomplete MO messages delivered partial early (reassembly memory bounds).
    mo_evicted: int = 0
    event_errors: int = 0
