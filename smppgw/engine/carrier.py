"""One carrier account: its binds and the dispatcher that feeds them.

The gateway hands a :class:`Carrier` routed jobs with :meth:`Carrier.submit` and hears
back through :class:`~smppgw.engine.observers.CarrierEvents`, whose coroutines return only
once their effect is durable; nothing here is acknowledged to the SMSC (deliver_sm_resp)
before that.

Sending is one dispatcher task per carrier. It decides *what* to send only at the moment a
token and a window slot are both free, so the head of the highest non-empty lane always
goes next: a ``high`` job never waits behind ``normal`` or ``low`` work, only behind
submits already in a session window. All parts of a job go in order through one session
(the one its first part used, while it stays bound) and the job is reported ``submitted``
once every part is accepted, message ids in part order.

The carrier only dispatches; its parts own their state:

* :mod:`~smppgw.engine.lanes`: priority lanes, and arming (``events.sending``) ahead;
* :mod:`~smppgw.engine.throttle`: the account's rate limit (never over tps in any second);
* :mod:`~smppgw.engine.pause`: the pause/probe answer to SMSC throttling;
* :mod:`~smppgw.engine.pdus`: a job's text → its submit_sm, built once;
* :mod:`~smppgw.engine.results`: what an answer means (accepted, retry, reject) and the
  job's outcome event;
* :mod:`~smppgw.engine.receipts` and :mod:`~smppgw.engine.mo`: what the SMSC delivers.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from smppgw.config import BindMode, CarrierConfig
from smppgw.engine.binds import bind_params, retuned
from smppgw.engine.context import CarrierContext
from smppgw.engine.job import SendJob
from smppgw.engine.lanes import Arming, Lanes, arming_plan
from smppgw.engine.matching import ReceiptMatcher
from smppgw.engine.message import OutboundMessage, Priority
from smppgw.engine.mo import MoHandler
from smppgw.engine.observers import UNOBSERVED, CarrierEvents, CarrierObserver, CarrierStats
from smppgw.engine.pause import INF, ThrottlePause
from smppgw.engine.pdus import PduBuilder
from smppgw.engine.policy import ErrorPolicy
from smppgw.engine.receipts import Receipts
from smppgw.engine.results import Results
from smppgw.engine.tasks import Background
from smppgw.engine.throttle import Throttle
from smppgw.ops.logs import get_logger
from smppgw.smpp.pdu import DataSm, DeliverSm
from smppgw.smpp.receipt import is_receipt
from smppgw.smpp.session import BindGate, NotBound, Session, SessionKeeper
from smppgw.smpp.text import TextError

__all__ = ["UNOBSERVED", "Carrier", "CarrierEvents", "CarrierObserver", "CarrierStats"]

log = get_logger("smppgw.carrier")

#: The dispatcher yields to the event loop after this many sends in a row.
_BURST = 64
#: Longest a burst of submits is held for one write (``Session.request(hold=True)``):
#: well inside the throttle's guard (5 ms), so an exact-limit SMSC still sees each send
#: within its second.
HOLD_MAX = 0.001


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
        throttle: Throttle | None = None,
        bind_gate: BindGate | None = None,
        shared_store: bool = False,
    ) -> None:
        """``throttle``: the account's rate limit when it is not this process's alone
        (``smppgw.cluster.ratelimit.ClusterThrottle``); default, a local :class:`Throttle`.
        ``bind_gate``: taken before each bind when the account's binds are capped across
        gateways (``max_binds``, ``smppgw.cluster.binds``). ``shared_store``: other
        gateways map message ids in the same store (receipts may belong to their submits)."""
        self.config = config
        self._bind_gate = bind_gate
        self.name = config.name
        self.events = events
        self.observer = observer
        self.counters = CarrierStats()
        self.matcher = matcher if matcher is not None else ReceiptMatcher()
        self.throttle = throttle if throttle is not None else Throttle(config.tps)
        self._pause = ThrottlePause(config.throttle_backoff, config.throttle_backoff_max)
        self._pdus = PduBuilder(config)
        self._background = Background(self.name, self.counters)
        #: Jobs with the carrier: queued, sending, or awaiting their outcome event.
        self._active: dict[str, SendJob] = {}
        self._lanes = Lanes(self._wake)
        self.throttle.attach(self._wake)
        # Small batches: after a kill -9 every armed-but-unsent job counts as an unknown
        # outcome, so arm about 50 ms of sending at a time (one commit each).
        batch, depth = arming_plan(config.tps, config.window)
        self._arming = Arming(
            self.name, events, batch, self._background.spawn, self._wake, depth=depth
        )
        ctx = CarrierContext(config, events, observer, self.counters)
        self._results = Results(
            ctx,
            lanes=self._lanes,
            pause=self._pause,
            throttle=self.throttle,
            matcher=self.matcher,
            background=self._background,
            active=self._active,
            wake=self._wake,
        )
        self.policy = self._results.policy
        self._receipts = Receipts(ctx, self.matcher, self._active, shared_store=shared_store)
        self._mo = MoHandler(ctx, self._background, reassembly_timeout)
        self._order = 0
        self.keepers: list[SessionKeeper] = []
        self._tx: list[SessionKeeper] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._housekeeper: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        #: Sessions holding this burst's submits for one write each, and since when.
        self._held: list[Session] = []
        self._held_since = 0.0
        self._dirty = False
        self._started = False
        self._closing = False
        #: ``smppgw ctl pause``: binds stay up, no new job starts (see :meth:`hold`).
        self.held = False
        self._stopped = False
        #: When the dispatcher last started waiting for a token alone (metrics).
        self._throttled_since: float | None = None

    # ================================================================== public API
    async def start(self) -> None:
        """Open the binds (in the background, with reconnect back-off) and start sending."""
        if self._started:
            return
        self._started = True
        for _ in range(max(1, self.config.sessions)):
            self._add_session()
        for keeper in self.keepers:
            keeper.start()
        loop = asyncio.get_running_loop()
        self._dispatcher = loop.create_task(self._dispatch_loop(), name=f"{self.name}/dispatch")
        self._housekeeper = loop.create_task(
            self._mo.housekeeping(), name=f"{self.name}/housekeeping"
        )

    def _session_modes(self) -> tuple[str, ...]:
        """The binds one of ``sessions`` opens: one transceiver, one transmitter, or a pair."""
        bind = self.config.bind
        if bind == BindMode.TRANSCEIVER:
            return ("transceiver",)
        if bind == BindMode.TRANSMITTER_RECEIVER:
            return ("transmitter", "receiver")
        return ("transmitter",)

    def _add_session(self) -> list[SessionKeeper]:
        """One more of ``sessions``: its keepers, created and listed (started by the caller)."""
        added = []
        for mode in self._session_modes():
            slot = sum(1 for k in self.keepers if k.mode == mode)
            keeper = SessionKeeper(
                bind_params(self.config, mode),
                self,
                name=f"{self.name}/{mode[:3]}{slot + 1}",
                on_change=self._wake,
                observer=self.observer,
                slot=slot,
                gate=self._bind_gate,
            )
            self.keepers.append(keeper)
            if mode != "receiver":
                self._tx.append(keeper)
            added.append(keeper)
        return added

    # ================================================================== reload
    def reconfigure(self, config: CarrierConfig) -> None:
        """Take a reload's new settings without touching the binds: rate, window, texts,
        retries, error policy, timeouts, ... (see :mod:`smppgw.engine.reconfig`).

        The caller keeps what identifies a bind and ``sessions`` unchanged here: those
        go through a rebind and :meth:`resize`. A smaller window only holds back new
        submits; a lower tps allows no burst (:meth:`Throttle.set_rate`).
        """
        old = self.config
        self.config = config
        if config.tps != old.tps:
            self.throttle.set_rate(config.tps)
            self._arming.batch, self._arming.depth = arming_plan(config.tps, config.window)
        self._pause.retune(config.throttle_backoff, config.throttle_backoff_max)
        if config.concat != old.concat:
            self._pdus = PduBuilder(config)
        else:
            self._pdus.config = config
        self._results.config = config
        self._results.policy = self.policy = ErrorPolicy(dict(config.error_policy))
        self._receipts.config = config
        self._mo.config = config
        for keeper in self.keepers:
            keeper.retune(retuned(keeper.params, config))
        self._wake()

    async def resize(self, sessions: int, drain_timeout: float) -> None:
        """Grow or shrink to ``sessions``, one bind (or transmitter/receiver pair) at a
        time. A bind that goes first takes no new job; the parts of jobs it started and
        its window finish (up to ``drain_timeout``), then it unbinds."""
        sessions = max(1, sessions)
        self.config = replace(self.config, sessions=sessions)
        per_session = len(self._session_modes())
        while len(self.keepers) // per_session < sessions:
            for keeper in self._add_session():
                keeper.start()
            log.info("session_added", carrier=self.name, binds=len(self.keepers))
        while len(self.keepers) // per_session > sessions:
            going = self.keepers[-per_session:]
            for keeper in going:
                if keeper in self._tx:
                    self._tx.remove(keeper)
            await self._drain_binds(going, drain_timeout)
            unbind_timeout = min(self.config.response_timeout, 5.0)
            await asyncio.gather(*(k.stop(unbind_timeout) for k in going))
            del self.keepers[-per_session:]
            log.info("session_removed", carrier=self.name, binds=len(self.keepers))
        self._wake()

    async def _drain_binds(self, going: list[SessionKeeper], timeout: float) -> None:
        """Until no job has parts left to send on ``going``'s sessions and their windows
        are empty, or ``timeout`` passes."""
        deadline = time.monotonic() + max(0.0, timeout)

        def busy() -> bool:
            sessions = {id(k.session) for k in going if k.session is not None}
            if not sessions:
                return False
            if any(k.session is not None and k.session.in_flight for k in going):
                return True
            return any(
                id(j.session) in sessions and j.todo and not j.reported
                for j in self._active.values()
            )

        while busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

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
        job = SendJob(
            message=message, order=self._order, attempt=message.attempt, lane=int(message.priority)
        )
        self._active[message.job_id] = job
        self._arming.add(job)
        self._lanes.append(job)

    def backlog(self) -> dict[Priority, int]:
        """Jobs queued in memory per lane (not counting those in a window or a retry wait)."""
        return self._lanes.backlog()

    def evict(
        self, select: Callable[[OutboundMessage], bool], max_lane: int
    ) -> list[OutboundMessage]:
        """Take back the jobs of lanes up to ``max_lane`` that have sent nothing yet (no
        part written, no retry pending, no outcome on its way) and that ``select``
        accepts, in lane and arrival order: failover moves them to another carrier.
        Removed here first, so this carrier can never write them afterwards; an arming
        record still on its way is harmless (the store marks only ``sending`` jobs
        ``in_flight``, and a move resets the state)."""
        taken: list[OutboundMessage] = []
        for job in self._lanes.unstarted(max_lane):
            if not select(job.message):
                continue
            self._lanes.remove(job)
            self._active.pop(job.job_id, None)
            taken.append(job.message)
        if taken:
            self._wake()
        return taken

    def hold(self, held: bool) -> None:
        """Start no new job while ``held`` (binds stay up; jobs already started send their
        remaining parts and windows drain); ``False`` carries on where it stopped."""
        self.held = held
        self._wake()

    def wants(self) -> int:
        """How many more jobs the carrier would like in memory: about two seconds of work."""
        if self._closing or self.held:
            return 0
        cfg = self.config
        target = max(2 * cfg.tps, 2 * max(1, cfg.window) * max(1, len(self._tx) or cfg.sessions))
        queued = len(self._lanes) + self._results.retrying
        return max(0, math.ceil(target) - queued)

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
        reassembler = self._mo.reassembler
        out.update(
            binds_configured=len(self.keepers),
            binds_up=self.bound_sessions,
            window_in_use=sum(s.in_flight for s in sessions),
            window_size=sum(s.window for s in sessions if s.mode != "receiver"),
            queued={p.name.lower(): n for p, n in self._lanes.backlog().items()},
            retrying=self._results.retrying,
            active_jobs=len(self._active),
            paused=self._pause.paused(time.monotonic()),
            pause_level=self._pause.level,
            throttle_granted=self.throttle.granted,
            throttle_guard=self.throttle.guard,
            bind_attempts=sum(k.bind_attempts for k in self.keepers),
            bind_refusals=sum(k.bind_refusals for k in self.keepers),
            binds=sum(k.binds for k in self.keepers),
            receipts_waiting=self.matcher.held,
            receipt_map_size=len(self.matcher),
            mo_pending=len(reassembler),
            mo_pending_bytes=reassembler.bytes,
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
        results = self._results
        for job in list(self._active.values()):
            if job.reported or not job.started:
                continue
            if job.failure is None and job.accepted:
                results.fail(job, "failed", "shutdown", "stopped before every part was sent")
            else:
                results.cancel_retry(job)
            results.settle(job)
            if not job.reported and job.inflight:
                log.error("job still in flight at stop", carrier=self.name, job_id=job.job_id)
        # Outcome events (including unknown outcomes from the closed windows) must land.
        await self._background.drain(max(2.0, deadline - time.monotonic()))
        self._stopped = True

    # ================================================================== deliver_sm
    async def deliver(self, session: Session, pdu: DeliverSm | DataSm) -> int:
        """Receipt or MO from the SMSC; the return (a status) is sent once this returns."""
        short_message = pdu.short_message if isinstance(pdu, DeliverSm) else b""
        if is_receipt(pdu.esm_class):
            return await self._receipts.on_receipt(short_message, pdu)
        return await self._mo.on_mo(short_message, pdu)

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
                    self._write_held()
                    await asyncio.sleep(0)
                continue
            self._write_held()
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

    def _write_held(self) -> None:
        """The burst ends: each session writes the submits it held, in one write."""
        held = self._held
        if held:
            for session in held:
                session.write_held()
            held.clear()

    def _end(self, job: SendJob, status: str, code: str, reason: str) -> None:
        """The job ends here, before (another of) its parts is sent."""
        self._results.fail(job, status, code, reason)
        self._results.settle(job)

    def _step(self) -> float | None:
        """Send at most one part; None when something happened, else seconds to wait."""
        now = time.monotonic()
        wait = self._pause.wait(now)
        if wait is not None:
            return wait
        job = self._lanes.head(self._closing or self.held)
        if job is None:
            return INF
        msg = job.message
        if not job.started:
            if msg.expires_at is not None and msg.expires_at - time.time() < 1.0:
                self._end(job, "expired", "ttl", "ttl passed before submission")
                return None
            if job.pdus is None:
                try:
                    job.pdus = self._pdus.build(msg)
                except (TextError, ValueError) as exc:
                    self._end(job, "rejected", "text", str(exc))
                    return None
                job.todo = list(range(len(job.pdus)))
                job.ids = [None] * len(job.pdus)
                job.keys = [""] * len(job.pdus)
            if not job.armed:
                self._arming.request()
                return INF  # arming wakes the dispatcher
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
        try:
            fut = session.request(PduBuilder.stamp(job.pdus[part], msg), hold=True)
        except NotBound:
            return None  # the session just went; pick again
        except ValueError as exc:
            self._end(job, "rejected", "encode", str(exc))
            return None
        self.throttle.take()
        held = self._held
        if not held:
            self._held_since = now
        if session not in held:
            held.append(session)
        if now - self._held_since >= HOLD_MAX:
            self._write_held()
        self.counters.submit_sm_sent += 1
        self.observer.submit_sent(self.name)
        job.todo.pop(0)
        if not job.todo:
            self._lanes.remove(job)
        job.inflight += 1
        if not job.started:
            self._arming.started()
        job.started = True
        job.session = session
        epoch, probe = self._pause.sent()
        fut.add_done_callback(partial(self._results.on_result, job, part, epoch, probe, now))
        return None

    def _pick_session(self, job: SendJob) -> Session | None:
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


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
