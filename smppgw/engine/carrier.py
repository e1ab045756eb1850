"""One carrier account: its binds, its rate limit, its priority lanes, its retries.

The gateway hands a :class:`Carrier` routed jobs with :meth:`Carrier.submit` and hears
back through :class:`CarrierEvents`, whose coroutines return only once their effect is
durable; nothing here is acknowledged to the SMSC (deliver_sm_resp) before that.

Sending is one dispatcher task per carrier. It decides *what* to send only at the moment a
token and a window slot are both free, so the head of the highest non-empty lane always
goes next: a ``high`` job never waits behind ``normal`` or ``low`` work, only behind
submits already in a session window. All parts of a job go in order through one session
(the one its first part used, while it stays bound) and the job is reported ``submitted``
once every part is accepted, message ids in part order.

Outcomes of one submit_sm:

* accepted: the id is normalised and mapped to (job, part, parts) for receipt matching;
* ESME_RTHROTTLED / ESME_RMSGQFUL (or whatever :mod:`smppgw.engine.policy` maps to THROTTLE):
  the whole carrier pauses (``throttle_backoff``, doubling up to ``throttle_backoff_max``
  while the throttling goes on), then sends one probe; the part goes back to the head of
  its lane, in the job's original order;
* permanent error: the job is ``rejected`` with the status name as code;
* transient error: the part is retried after ``retry_backoff * 2**(n-1)`` up to
  ``max_retries`` times, then the job is ``failed`` / ``retries_exhausted``;
* no response (timeout, or the connection dropped with it in the window): the outcome is
  unknown, and the job is ``failed`` / ``unknown_outcome`` -- unless the carrier opts into
  ``resend_on_timeout``, which treats it as transient and risks a duplicate.

Once a part of a multi-part job fails for good, no further part is sent; the failure is
reported when the parts still in flight have answered, and its reason lists the parts that
were accepted (``parts accepted: 1=<id>``), because those may still reach the handset and
their receipts are still reported for the job.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from smppgw.config import BindMode, CarrierConfig
from smppgw.engine.binds import bind_params
from smppgw.engine.matching import PartRef, ReceiptMatcher
from smppgw.engine.message import OutboundMessage, Priority
from smppgw.engine.policy import Action, ErrorPolicy
from smppgw.engine.throttle import Throttle
from smppgw.ops.logs import get_logger
from smppgw.smpp.constants import Status
from smppgw.smpp.pdu import DataSm, DeliverSm, SubmitSm
from smppgw.smpp.receipt import (
    Receipt,
    ReceiptError,
    is_receipt,
    normalize_message_id,
    parse_receipt,
)
from smppgw.smpp.session import (
    NoResponse,
    NotBound,
    Result,
    Session,
    SessionKeeper,
    SessionObserver,
    Unobserved,
)
from smppgw.smpp.text import (
    Concat,
    MoPart,
    MoRefused,
    Reassembler,
    RefCounter,
    TextError,
    decode_mo,
    split,
)

log = get_logger("smppgw.carrier")

INF = math.inf
#: The dispatcher yields to the event loop after this many sends in a row.
_BURST = 64
#: Seconds before a failed ``events.sending`` call is tried again.
_ARM_RETRY = 0.5
#: Completed multi-part MO texts kept while their inbound event is retried.
_MO_UNSENT_MAX = 1000


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


def relative_validity(seconds: float) -> str:
    """SMPP relative time "YYMMDDhhmmss000R" (years of 365 days, months of 30)."""
    s = max(1, int(seconds))
    years, s = divmod(s, 365 * 86400)
    months, s = divmod(s, 30 * 86400)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, secs = divmod(s, 60)
    return f"{min(years, 99):02d}{months:02d}{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


@dataclass(eq=False, slots=True)
class _Job:
    message: OutboundMessage
    order: int
    attempt: int
    lane: int
    pdus: list[SubmitSm] | None = None
    #: Part indexes (0-based) still to send, ascending.
    todo: list[int] = field(default_factory=list)
    ids: list[str | None] = field(default_factory=list)
    #: Normalised ``ids`` (the receipt matching keys), computed once when accepted.
    keys: list[str] = field(default_factory=list)
    accepted: int = 0
    inflight: int = 0
    session: Session | None = None
    started: bool = False
    queued: bool = False
    retry: asyncio.TimerHandle | None = None
    failure: tuple[str, str, str] | None = None
    reported: bool = False
    #: Set once the job's submitted/finished event has returned.
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    #: ``events.sending`` returned for this job: its parts may go out.
    armed: bool = False

    @property
    def parts(self) -> int:
        return len(self.pdus) if self.pdus is not None else 0


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


class Carrier:
    """One SMSC account; see the module docstring for the sending rules."""

    def __init__(
        self,
        config: CarrierConfig,
        events: CarrierEvents,
        *,
        matcher: ReceiptMatcher | None = None,
        reassembly_timeout: float = 300.0,
        observer: CarrierObserver = UNOBSERVED,
    ) -> None:
        self.config = config
        self.name = config.name
        self.events = events
        self.observer = observer
        self.policy = ErrorPolicy(dict(config.error_policy))
        self.matcher = matcher if matcher is not None else ReceiptMatcher()
        self._reassembler = Reassembler(reassembly_timeout)
        #: Set when the reassembler evicted messages: the housekeeper delivers them now,
        #: since they hold reassembly room until it does.
        self._mo_evicted = asyncio.Event()
        self._mo_unsent: OrderedDict[tuple[str, str, int, int], str] = OrderedDict()
        bits = 8 if config.concat == Concat.UDH8 else 16
        self._refs = RefCounter(bits)
        self.throttle = Throttle(config.tps)
        self._lanes: tuple[deque[_Job], ...] = tuple(deque() for _ in Priority)
        #: Jobs not yet armed (``events.sending``), per lane, in arrival order.
        self._to_arm: tuple[deque[_Job], ...] = tuple(deque() for _ in Priority)
        self._arming = False
        #: Armed jobs not yet started: when it runs low the next batch is armed ahead.
        self._armed_ready = 0
        # Small batches: after a kill -9 every armed-but-unsent job counts as an unknown
        # outcome, so arm about 50 ms of sending at a time (one commit each).
        self._arm_batch = max(8, min(200, int(config.tps * 0.05)), config.window)
        self._active: dict[str, _Job] = {}
        self._order = 0
        self._retrying = 0
        self.keepers: list[SessionKeeper] = []
        self._tx: list[SessionKeeper] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._housekeeper: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._dirty = False
        self._started = False
        self._closing = False
        self._stopped = False
        # throttling (ESME_RTHROTTLED) state
        self._paused_until = 0.0
        self._pause_level = config.throttle_backoff
        self._epoch = 0
        self._probing = False
        self._probe_inflight = False
        #: When the dispatcher last started waiting for a token alone (metrics).
        self._throttled_since: float | None = None
        self.counters = CarrierStats()

    # ================================================================== public API
    async def start(self) -> None:
        """Open the binds (in the background, with reconnect back-off) and start sending."""
        if self._started:
            return
        self._started = True
        cfg = self.config
        n = max(1, cfg.sessions)
        modes: list[str]
        if cfg.bind == BindMode.TRANSCEIVER:
            modes = ["transceiver"] * n
        elif cfg.bind == BindMode.TRANSMITTER_RECEIVER:
            modes = ["transmitter", "receiver"] * n
        else:
            modes = ["transmitter"] * n
        counts: dict[str, int] = {}
        for mode in modes:
            counts[mode] = counts.get(mode, 0) + 1
            keeper = SessionKeeper(
                bind_params(cfg, mode),
                self,
                name=f"{self.name}/{mode[:3]}{counts[mode]}",
                on_change=self._wake,
                observer=self.observer,
                slot=counts[mode] - 1,
            )
            self.keepers.append(keeper)
            if mode != "receiver":
                self._tx.append(keeper)
        for keeper in self.keepers:
            keeper.start()
        loop = asyncio.get_running_loop()
        self._dispatcher = loop.create_task(self._dispatch_loop(), name=f"{self.name}/dispatch")
        self._housekeeper = loop.create_task(self._housekeeping(), name=f"{self.name}/housekeeping")

    async def wait_ready(self, timeout: float) -> bool:
        """Until every bind is up (True) or ``timeout`` passes (False). For tests and /readyz."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.keepers and all(k.bound for k in self.keepers):
                return True
            await asyncio.sleep(0.01)
        return bool(self.keepers) and all(k.bound for k in self.keepers)

    def submit(self, message: OutboundMessage) -> None:
        """Queue a job at the tail of its priority lane (non-blocking)."""
        if self._closing:
            raise RuntimeError(f"carrier {self.name} is stopping")
        if message.job_id in self._active:
            raise ValueError(f"job {message.job_id!r} is already with carrier {self.name}")
        self._order += 1
        lane = int(message.priority)
        job = _Job(message=message, order=self._order, attempt=message.attempt, lane=lane)
        self._active[message.job_id] = job
        self._lanes[lane].append(job)
        self._to_arm[lane].append(job)
        job.queued = True
        self._wake()

    def backlog(self) -> dict[Priority, int]:
        """Jobs queued in memory per lane (not counting those in a window or a retry wait)."""
        return {p: len(self._lanes[p]) for p in Priority}

    def wants(self) -> int:
        """How many more jobs the carrier would like in memory: about two seconds of work."""
        if self._closing:
            return 0
        cfg = self.config
        target = max(2 * cfg.tps, 2 * max(1, cfg.window) * max(1, len(self._tx) or cfg.sessions))
        queued = sum(len(lane) for lane in self._lanes) + self._retrying
        return max(0, math.ceil(target) - queued)

    def has(self, job_id: str) -> bool:
        """Is this job with the carrier (queued, sending, or awaiting its outcome event)?"""
        return job_id in self._active

    @property
    def bound_sessions(self) -> int:
        return sum(1 for k in self.keepers if k.bound)

    @property
    def ready(self) -> bool:
        """At least one bind that can submit is up."""
        return any(k.bound for k in self._tx)

    def stats(self) -> dict[str, Any]:
        """Counters and gauges for metrics (no secrets)."""
        out: dict[str, Any] = {
            field_name: getattr(self.counters, field_name)
            for field_name in CarrierStats.__dataclass_fields__
        }
        sessions = [k.session for k in self.keepers if k.session is not None]
        out.update(
            binds_configured=len(self.keepers),
            binds_up=self.bound_sessions,
            window_in_use=sum(s.in_flight for s in sessions),
            window_size=sum(s.window for s in sessions if s.mode != "receiver"),
            queued={p.name.lower(): len(self._lanes[p]) for p in Priority},
            retrying=self._retrying,
            active_jobs=len(self._active),
            paused=self._paused_until > time.monotonic(),
            pause_level=self._pause_level,
            throttle_granted=self.throttle.granted,
            bind_attempts=sum(k.bind_attempts for k in self.keepers),
            bind_refusals=sum(k.bind_refusals for k in self.keepers),
            binds=sum(k.binds for k in self.keepers),
            receipts_waiting=self.matcher.held,
            receipt_map_size=len(self.matcher),
            mo_pending=len(self._reassembler),
            mo_pending_bytes=self._reassembler.bytes,
        )
        return out

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop taking jobs, let started ones finish (bounded), unbind, close.

        Until the deadline, jobs already started keep sending their remaining parts and
        windows drain; no new job starts. Then the binds are unbound, which resolves
        anything still in a window as an unknown outcome (reported ``unknown_outcome``).

        Afterwards a job has no event only if the SMSC accepted none of it and holds
        none of it in doubt: never started, or refused with transient errors and waiting
        for its retry. Those are safe to send again after a restart. A job that has parts
        accepted but others never sent is reported ``failed`` / ``shutdown`` with the
        accepted parts in the reason, so it is not sent twice.
        """
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._closing = True
        self._wake()
        deadline = time.monotonic() + max(0.0, drain_timeout)

        def busy() -> bool:
            return any(j.started and not j.reported for j in self._active.values())

        while busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        remaining = max(0.0, deadline - time.monotonic())
        sessions = [k.session for k in self.keepers if k.session is not None]
        await asyncio.gather(*(s.wait_handlers(remaining) for s in sessions))
        unbind_timeout = min(self.config.response_timeout, 5.0)
        await asyncio.gather(*(k.stop(unbind_timeout) for k in self.keepers))
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            await asyncio.gather(self._housekeeper, return_exceptions=True)
        await asyncio.sleep(0)  # let the closed windows' results run their callbacks
        for job in list(self._active.values()):
            if job.reported or not job.started:
                continue
            if job.failure is None and job.accepted:
                self._fail(job, "failed", "shutdown", "stopped before every part was sent")
            elif job.retry is not None:
                job.retry.cancel()
                job.retry = None
                self._retrying -= 1
            self._settle(job)
            if not job.reported and job.inflight:
                log.error(
                    "job still in flight at stop", carrier=self.name, job_id=job.message.job_id
                )
        # Outcome events (including unknown outcomes from the closed windows) must land.
        grace = max(2.0, deadline - time.monotonic())
        if self._tasks:
            _done, pending = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.error(
                    "outcome events still pending at stop", carrier=self.name, count=len(pending)
                )
                await asyncio.wait(pending)
        self._stopped = True

    # ================================================================== dispatcher
    def _wake(self) -> None:
        self._dirty = True
        fut = self._wakeup
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def _dispatch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        burst = 0
        while True:
            self._dirty = False
            wait = self._step()
            if wait is None:
                burst += 1
                if burst >= _BURST:
                    burst = 0
                    await asyncio.sleep(0)
                continue
            burst = 0
            if self._dirty:
                continue
            fut: asyncio.Future[None] = loop.create_future()
            self._wakeup = fut
            timer = loop.call_later(wait, _resolve, fut) if wait != INF else None
            try:
                await fut
            finally:
                self._wakeup = None
                if timer is not None:
                    timer.cancel()

    def _head(self) -> _Job | None:
        if self._closing:
            for lane in self._lanes:
                for job in lane:
                    if job.started:
                        return job
            return None
        for lane in self._lanes:
            if lane:
                return lane[0]
        return None

    def _step(self) -> float | None:
        """Send at most one part; None when something happened, else seconds to wait."""
        now = time.monotonic()
        if self._paused_until > now:
            return self._paused_until - now
        if self._probe_inflight:
            return INF
        job = self._head()
        if job is None:
            return INF
        msg = job.message
        if not job.started:
            if msg.expires_at is not None and msg.expires_at - time.time() < 1.0:
                self._unqueue(job)
                self._fail(job, "expired", "ttl", "ttl passed before submission")
                self._settle(job)
                return None
            if job.pdus is None:
                try:
                    self._prepare(job)
                except (TextError, ValueError) as exc:
                    self._unqueue(job)
                    self._fail(job, "rejected", "text", str(exc))
                    self._settle(job)
                    return None
            if not job.armed:
                if not self._arming:
                    self._start_arming()
                return INF  # _arm() wakes the dispatcher
        session = self._pick_session(job)
        if session is None:
            return INF
        wait = self.throttle.delay(now)
        if wait > 0.0:
            if self._throttled_since is None:
                self._throttled_since = now
            return wait
        if self._throttled_since is not None:
            self.counters.throttle_wait_seconds += now - self._throttled_since
            self.observer.throttle_wait(self.name, now - self._throttled_since)
            self._throttled_since = None
        assert job.pdus is not None
        part = job.todo[0]
        pdu = job.pdus[part]
        if msg.expires_at is not None:
            pdu.validity_period = relative_validity(msg.expires_at - time.time())
        try:
            fut = session.request(pdu)
        except NotBound:
            return None  # the session just went; pick again
        except ValueError as exc:
            self._unqueue(job)
            self._fail(job, "rejected", "encode", str(exc))
            self._settle(job)
            return None
        self.throttle.take()
        self.counters.submit_sm_sent += 1
        self.observer.submit_sent(self.name)
        job.todo.pop(0)
        if not job.todo:
            self._unqueue(job)
        job.inflight += 1
        if not job.started:
            self._armed_ready -= 1
            if self._armed_ready < self._arm_batch // 2 and not self._arming:
                self._start_arming()
        job.started = True
        job.session = session
        probe = self._probing
        if probe:
            self._probe_inflight = True
        fut.add_done_callback(partial(self._on_result, job, part, self._epoch, probe, now))
        return None

    def _start_arming(self) -> None:
        """Arm the next jobs (highest lanes first) with one ``events.sending`` call."""
        batch: list[_Job] = []
        for pending in self._to_arm:
            while pending and len(batch) < self._arm_batch:
                job = pending.popleft()
                if job.queued and not job.armed and job.failure is None:
                    batch.append(job)
        if batch:
            self._arming = True
            self._spawn(self._arm(batch))

    async def _arm(self, batch: list[_Job]) -> None:
        try:
            await self.events.sending(self.name, [job.message.job_id for job in batch])
        except Exception as exc:
            log.warning("sending_record_failed", carrier=self.name, jobs=len(batch), error=str(exc))
            for job in reversed(batch):
                self._to_arm[job.lane].appendleft(job)
            await asyncio.sleep(_ARM_RETRY)
        else:
            for job in batch:
                job.armed = True
            self._armed_ready = max(0, self._armed_ready) + len(batch)
        finally:
            self._arming = False
            self._wake()

    def _pick_session(self, job: _Job) -> Session | None:
        pinned = job.session
        if pinned is not None and pinned.can_submit:
            return pinned if pinned.free_window > 0 else None
        best: Session | None = None
        best_free = 0
        for keeper in self._tx:
            s = keeper.session
            if s is None:
                continue
            free = s.free_window
            if free > best_free:
                best, best_free = s, free
        return best

    def _prepare(self, job: _Job) -> None:
        """Split the text and build the submit_sm of every part (kept for retries)."""
        cfg = self.config
        msg = job.message
        parts = split(
            msg.text,
            coding=cfg.coding,
            concat=cfg.concat,
            ref=self._refs.next(msg.destination),
            max_parts=cfg.max_parts,
        )
        source = msg.source or cfg.source
        if source is not None:
            src_ton, src_npi, src_addr = source.ton, source.npi, source.address
        else:
            src_ton, src_npi, src_addr = 0, 0, ""  # the SMSC fills in the account default
        registered = 1 if msg.dlr else 0
        pdus = [
            SubmitSm(
                tlvs=list(p.tlvs),
                source_addr_ton=src_ton,
                source_addr_npi=src_npi,
                source_addr=src_addr,
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr=msg.destination,
                esm_class=p.esm_class,
                registered_delivery=registered,
                data_coding=p.data_coding,
                short_message=p.short_message,
            )
            for p in parts
        ]
        job.pdus = pdus
        job.todo = list(range(len(pdus)))
        job.ids = [None] * len(pdus)
        job.keys = [""] * len(pdus)

    def _unqueue(self, job: _Job) -> None:
        if not job.queued:
            return
        lane = self._lanes[job.lane]
        if lane and lane[0] is job:
            lane.popleft()
        else:
            lane.remove(job)
        job.queued = False

    def _requeue_front(self, job: _Job) -> None:
        """Back into its lane ahead of every younger job (a requeued job is old)."""
        if job.queued or job.failure is not None or job.retry is not None or job.reported:
            return
        if job.pdus is not None and not job.todo:
            return
        lane = self._lanes[job.lane]
        index = 0
        for other in lane:
            if other.order > job.order:
                break
            index += 1
        lane.insert(index, job)
        job.queued = True
        self._wake()

    # ================================================================== results
    def _on_result(
        self,
        job: _Job,
        part: int,
        epoch: int,
        probe: bool,
        sent: float,
        fut: asyncio.Future[Result],
    ) -> None:
        result = fut.result()
        job.inflight -= 1
        if probe:
            self._probe_inflight = False
            self._probing = False
        n = job.parts
        where = f"part {part + 1}/{n}" if n > 1 else "submit_sm"
        c = self.counters
        if isinstance(result, NoResponse):
            c.submit_sm_unknown += 1
            self.observer.submit_timeout(self.name)
            if self.config.resend_on_timeout and result.resendable:
                self._retry(job, part, f"{where}: no response ({result.reason}); resending")
            else:
                # Also when the response said ESME_ROK but was unusable (a message_id over
                # 64 octets, an unreadable body): the SMSC took it, so it is never resent,
                # and it is not reported submitted either, because its receipts could never
                # be matched to an id we cannot keep. unknown_outcome tells the publisher
                # the truth: it may or may not reach the handset.
                self._fail(
                    job,
                    "failed",
                    "unknown_outcome",
                    f"{where}: no usable submit_sm_resp ({result.reason}); "
                    "the SMSC may have accepted it",
                )
        elif result.status == Status.ESME_ROK:
            self.observer.submit_response(self.name, 0, time.monotonic() - sent)
            c.submit_sm_accepted += 1
            if probe:
                self._pause_level = self.config.throttle_backoff
            message_id = str(getattr(result, "message_id", ""))
            job.ids[part] = message_id
            job.accepted += 1
            if message_id:
                try:
                    key = normalize_message_id(message_id, self.config.submit_id_base)
                except ValueError:
                    key = normalize_message_id(message_id)
                job.keys[part] = key
                self.matcher.add(key, PartRef(job.message.job_id, part, n, time.monotonic()))
        else:
            self.observer.submit_response(self.name, result.status, time.monotonic() - sent)
            action = self.policy.classify(result.status)
            code = self.policy.describe(result.status)
            if action is Action.THROTTLE:
                c.submit_sm_throttled += 1
                self._throttled(job, part, epoch)
            elif action is Action.PERMANENT:
                c.submit_sm_rejected += 1
                self._fail(job, "rejected", code, f"{where}: {code}")
            else:
                c.submit_sm_transient += 1
                self._retry(job, part, f"{where}: {code}")
        self._settle(job)
        self._wake()

    def _throttled(self, job: _Job, part: int, epoch: int) -> None:
        if job.failure is None:
            bisect.insort(job.todo, part)
            self._requeue_front(job)
            self.observer.retry(self.name)
        if epoch != self._epoch:
            return  # sent before the pause we are already in: no extra back-off
        self._epoch += 1
        pause = self._pause_level
        self._pause_level = min(pause * 2.0, self.config.throttle_backoff_max)
        self._paused_until = time.monotonic() + pause
        self._probing = True
        self.counters.throttle_pauses += 1
        self.observer.throttle_backoff(self.name, pause)
        log.warning("SMSC throttling; pausing", carrier=self.name, seconds=pause)

    def _retry(self, job: _Job, part: int, why: str) -> None:
        if job.failure is not None:
            return
        bisect.insort(job.todo, part)
        if job.retry is not None:
            self.observer.retry(self.name)
            return  # one back-off covers every part that failed in the same round
        job.attempt += 1
        self.counters.retries += 1
        if job.attempt > self.config.max_retries:
            self._fail(
                job, "failed", "retries_exhausted", f"{why}; gave up after {job.attempt} attempts"
            )
            return
        self.observer.retry(self.name)
        self._unqueue(job)
        delay = self.config.retry_backoff * (2.0 ** (job.attempt - 1))
        self._retrying += 1
        job.retry = asyncio.get_running_loop().call_later(delay, self._retry_due, job)

    def _retry_due(self, job: _Job) -> None:
        job.retry = None
        self._retrying -= 1
        self._requeue_front(job)

    def _fail(self, job: _Job, status: str, code: str, reason: str) -> None:
        if job.failure is None:
            job.failure = (status, code, reason)
        self._unqueue(job)
        if job.retry is not None:
            job.retry.cancel()
            job.retry = None
            self._retrying -= 1

    def _settle(self, job: _Job) -> None:
        """Report the job's outcome once it is known and nothing of it is in flight."""
        if job.reported:
            return
        if job.failure is not None:
            if job.inflight:
                return
            status, code, reason = job.failure
            accepted = [f"{i + 1}={mid}" for i, mid in enumerate(job.ids) if mid is not None]
            if accepted:
                reason = f"{reason}; parts accepted: {', '.join(accepted)}"
            c = self.counters
            if status == "rejected":
                c.jobs_rejected += 1
            elif status == "expired":
                c.jobs_expired += 1
            else:
                c.jobs_failed += 1
            self._report(
                job, partial(self.events.finished, self.name, job.message, status, code, reason)
            )
        elif job.pdus is not None and job.accepted == len(job.pdus):
            self.counters.jobs_submitted += 1
            ids = [mid or "" for mid in job.ids]
            self._report(job, partial(self.events.submitted, self.name, job.message, ids, job.keys))

    def _report(self, job: _Job, call: Callable[[], Awaitable[None]]) -> None:
        job.reported = True
        self._spawn(self._emit_outcome(job, call))

    async def _emit_outcome(self, job: _Job, call: Callable[[], Awaitable[None]]) -> None:
        await self._durably(call, job.message.job_id)
        job.settled.set()
        if self._active.get(job.message.job_id) is job:
            del self._active[job.message.job_id]

    async def _durably(self, call: Callable[[], Awaitable[None]], what: str) -> None:
        """Await an outcome event, retrying while it fails: an outcome must not be lost."""
        delay = 0.1
        while True:
            try:
                await call()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counters.event_errors += 1
                log.exception("outcome event failed; retrying", carrier=self.name, job_id=what)
                await asyncio.sleep(delay)
                delay = min(delay * 2.0, 5.0)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ================================================================== deliver_sm
    async def deliver(self, session: Session, pdu: DeliverSm | DataSm) -> int:
        """Receipt or MO from the SMSC; the return (a status) is sent once this returns."""
        short_message = pdu.short_message if isinstance(pdu, DeliverSm) else b""
        if is_receipt(pdu.esm_class):
            return await self._on_receipt(short_message, pdu)
        return await self._on_mo(short_message, pdu)

    async def _on_receipt(self, short_message: bytes, pdu: DeliverSm | DataSm) -> int:
        c = self.counters
        try:
            receipt = parse_receipt(short_message, pdu.tlvs)
        except ReceiptError as exc:
            # It will never parse; refusing it would only make the SMSC resend it forever.
            c.receipts_unreadable += 1
            log.warning(
                "unreadable receipt acknowledged and dropped",
                carrier=self.name,
                error=str(exc),
                short_message=short_message[:200].hex(),
            )
            return Status.ESME_ROK
        try:
            key = normalize_message_id(receipt.message_id, self.config.receipt_id_base)
        except ValueError:
            key = normalize_message_id(receipt.message_id)
        ref = self.matcher.get(key)
        if ref is None:
            hit = await self.events.lookup(self.name, key)
            if hit is not None:
                ref = PartRef(*hit)
        if ref is None:
            # Maybe it beat its submit_sm_resp: hold it (unanswered) until the id appears.
            c.receipts_held += 1
            self.observer.receipt_early(self.name)
            ref = await self.matcher.wait(key, self.config.receipt_hold)
            if ref is None:
                hit = await self.events.lookup(self.name, key)
                if hit is not None:
                    ref = PartRef(*hit)
        if ref is None:
            c.receipts_unmatched += 1
            await self.events.unmatched_receipt(self.name, receipt)
            return Status.ESME_ROK
        job = self._active.get(ref.job_id)
        if job is not None and not job.settled.is_set():
            # Report the job's submit outcome before its receipts.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.receipt_hold):
                    await job.settled.wait()
            if not job.settled.is_set():
                # Its outcome is still not durable (the store is failing or slow), so the
                # store has no parts to record the receipt against: acknowledging it now
                # would drop it. Refuse it for now; the SMSC delivers it again later.
                c.receipts_deferred += 1
                log.warning(
                    "receipt deferred: job outcome not yet durable",
                    carrier=self.name,
                    job_id=ref.job_id,
                )
                return Status.ESME_RX_T_APPN
        c.receipts_matched += 1
        await self.events.receipt(self.name, ref.job_id, ref.part, ref.parts, receipt)
        if ref.accepted_at:
            self.observer.receipt_latency(self.name, time.monotonic() - ref.accepted_at)
        if receipt.final:
            self.matcher.discard(key)
        return Status.ESME_ROK

    async def _on_mo(self, short_message: bytes, pdu: DeliverSm | DataSm) -> int:
        """MO text. A non-final part is acknowledged once it is in the reassembler (memory):
        holding its deliver_sm_resp until the last part would stall an SMSC that windows
        its deliver_sm, and could deadlock one with a window of 1. The cost: a crash between
        parts loses the parts already acknowledged."""
        c = self.counters
        mo = decode_mo(short_message, pdu.data_coding, pdu.esm_class, pdu.tlvs)
        source, destination = pdu.source_addr, pdu.destination_addr
        c.mo_parts += 1
        self.observer.mo_part(self.name)
        if mo.concat is None:
            await self.events.inbound(self.name, source, destination, mo.text)
            c.mo_messages += 1
            return Status.ESME_ROK
        ref, total, _seq = mo.concat
        slot = (source, destination, ref, total)
        text = self._mo_unsent.get(slot)
        if text is None:
            try:
                text = self._add_part(source, destination, mo)
            except MoRefused as exc:
                return self._mo_refused(exc)
            if text is None:
                return Status.ESME_ROK
            # Complete: keep it until the event is durable, so a failed event plus the
            # SMSC's redelivery of this part does not start a fresh reassembly.
            self._mo_unsent[slot] = text
            while len(self._mo_unsent) > _MO_UNSENT_MAX:
                self._mo_unsent.popitem(last=False)
        await self.events.inbound(self.name, source, destination, text)
        self._mo_unsent.pop(slot, None)
        c.mo_messages += 1
        return Status.ESME_ROK

    def _add_part(self, source: str, destination: str, mo: MoPart) -> str | None:
        """Into the reassembler; counts (and has delivered soon) what it had to evict."""
        reassembler = self._reassembler
        before = reassembler.evicted
        try:
            return reassembler.add((source, destination), mo)
        finally:
            evicted = reassembler.evicted - before
            if evicted:
                self.counters.mo_evicted += evicted
                self.observer.mo_evicted(self.name, evicted)
                self._mo_evicted.set()

    def _mo_refused(self, exc: MoRefused) -> int:
        """The answer to an MO part the reassembler would not hold: a part too large is
        malformed (ESME_RINVMSGLEN: the SMSC should not send it again); with reassembly
        memory full, ESME_RX_T_APPN asks the SMSC to deliver it later, so nothing is lost.
        Logged at the 1st, 2nd, 4th, 8th... refusal: a flood must not flood the log."""
        c = self.counters
        c.mo_parts_refused += 1
        self.observer.mo_refused(self.name, exc.reason)
        if c.mo_parts_refused & (c.mo_parts_refused - 1) == 0:
            log.warning(
                "MO part refused",
                carrier=self.name,
                reason=exc.reason,
                error=str(exc),
                refused=c.mo_parts_refused,
            )
        return Status.ESME_RINVMSGLEN if exc.reason == "too_large" else Status.ESME_RX_T_APPN

    async def _housekeeping(self) -> None:
        """Deliver MO messages whose missing parts never came (partial, never dropped), and
        those evicted early, as soon as there are any."""
        interval = max(0.05, min(5.0, self._reassembler.timeout / 4))
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._mo_evicted.wait()
            self._mo_evicted.clear()
            for (source, destination), text in self._reassembler.expire():
                self.counters.mo_messages += 1
                await self._durably(
                    partial(self.events.inbound, self.name, source, destination, text), "mo"
                )


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
