"""Held jobs: "do not send this job before T, for reason R", durable, with one timer.

A held job is a row of the store in state ``held`` (``JobState.HELD``) with ``held_until``
and ``hold_reason``; it is in no lane, so the feeders' claims never read it, and the
partial index ``jobs_held`` holds only held jobs (see ``smppgw.store.schema``). Nothing
runs per held job while it waits: :class:`Holds` keeps one timer, on the earliest
``held_until`` in the store, and re-reads that only when it fires or when a job is held
until an earlier time. A restart (even ``kill -9``) loses nothing: the timer is re-armed
from the store.

Reasons (:class:`HoldReason`): ``send_at`` (the job's own field); ``window`` and ``cap``
are for the marketing rules (outside the allowed hours; over the daily cap with
``cap_action: defer``). Any string works; these three are the ``smppgw_jobs_held``
``reason`` label values shown even at zero.

**Holding a job.**

* At intake: the job is stored held (``StoredJob.held_until`` / ``hold_reason`` /
  ``events``, built by :meth:`Holds.held`), with its ``scheduled`` event, in the same
  transaction; then :meth:`Holds.scheduled` re-arms the timer if it is now earlier.
* Later, any queued job: ``await holds.hold(job, until, reason)``.

**The release check** (the hook marketing rules plug into). ``holds.add_check(check)``
registers ``async def check(job: StoredJob, now: float) -> Decision``. Checks run, in the
order registered, for every held job that comes due, and for every job at intake that
is not held for ``send_at``; the first one that does not answer :data:`GO` decides:

* :data:`GO` (``Go()``): let it go (released into its lane; at intake: queued).
* ``HoldUntil(until, reason)``: hold it (again) until ``until`` for ``reason``; a new
  ``scheduled`` event announces the new ``send_at``. An ``until`` not in the future
  counts as :data:`GO`.
* ``Reject(code, reason)``: final ``rejected`` with that error code (``opted_out``,
  ``frequency_cap``...) and reason.

A check must be quick (it runs on the event loop, for a batch of due jobs at a time) and
must not raise; an exception is logged and the job released, so a broken rule never
keeps jobs forever. Checks see the job as the store has it (``StoredJob``: destination,
lane, tenant in the key, ``send_at``...); a check that needs its own facts (a category)
reads them from fields added to ``StoredJob``.

**TTL.** ``ttl`` counts from publication and still applies while a job is held: the timer
is set on ``min(held_until, expiry - 1 s)`` and a due job with less than a second of ttl
left ends ``expired`` (code ``ttl``) without a check.

Released jobs keep their arrival order (``seq``) and lane; a batch of due jobs is read
most urgent lane first and released in one transaction, so the feeders claim them in
priority order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial

import structlog

from smppgw.aio import wait_event
from smppgw.mqtt.schema import TTL_MARGIN
from smppgw.pipeline.outcomes import EventFactory, GatewayEvents
from smppgw.store import StoredJob, StoreError
from smppgw.store.contract import StoreAPI

log = structlog.get_logger("smppgw.holds")

#: Most due jobs looked at per round (one read, checks, one release transaction).
BATCH = 500
#: Longest the timer sleeps, in seconds: due times are wall-clock, the sleep is not, so a
#: clock step (NTP) delays a release by at most this. One store read a minute, whatever
#: the number of held jobs.
RECHECK = 60.0


class HoldReason(StrEnum):
    SEND_AT = "send_at"
    #: Marketing job outside ``consent.marketing_hours``.
    WINDOW = "window"
    #: Marketing job over ``consent.marketing_daily_cap`` with ``cap_action: defer``.
    CAP = "cap"


@dataclass(frozen=True, slots=True)
class Go:
    """Let the job go now."""


@dataclass(frozen=True, slots=True)
class HoldUntil:
    """Hold the job (again) until ``until`` (wall clock) for ``reason``."""

    until: float
    reason: str


@dataclass(frozen=True, slots=True)
class Reject:
    """End the job ``rejected`` with error ``code`` and ``reason``."""

    code: str
    reason: str


Decision = Go | HoldUntil | Reject
GO = Go()
#: ``async def check(job, now) -> Decision``: see the module docstring.
ReleaseCheck = Callable[[StoredJob, float], Awaitable[Decision]]


def timer_until(until: float, expires_at: float | None) -> float:
    """When the timer must look at a job held until ``until``: then, or when its ttl is
    about to run out if that is sooner."""
    if expires_at is None:
        return until
    return min(until, expires_at - TTL_MARGIN)


def held_job(job: StoredJob, until: float, reason: str, *, factory: EventFactory) -> StoredJob:
    """See ``Holds.held``."""
    return replace(
        job,
        held_until=timer_until(until, job.expires_at),
        hold_reason=reason,
        send_at=until,
        events=tuple(factory.scheduled(job, until)),
    )


class Holds:
    """The held jobs' single timer and their release (see the module docstring)."""

    def __init__(
        self,
        store: StoreAPI,
        factory: EventFactory,
        events: GatewayEvents,
        *,
        on_released: Callable[[str], None],
        on_events: Callable[[], None],
    ) -> None:
        """``on_released(carrier)``: jobs went into that carrier's lanes (wake its
        feeder). ``on_events()``: events were committed (wake the outbox)."""
        self._store = store
        self._factory = factory
        self._events = events
        self._on_released = on_released
        self._on_events = on_events
        self.checks: list[ReleaseCheck] = []
        #: Set when a job was held until before ``_armed``: the timer must look again.
        self._changed = asyncio.Event()
        #: The ``held_until`` the timer sleeps for (``inf``: none held).
        self._armed = float("inf")
        self.released = 0

    def add_check(self, check: ReleaseCheck) -> None:
        """Consult ``check`` at release (and at intake) for every job; see the module
        docstring for the contract."""
        self.checks.append(check)

    async def check(self, job: StoredJob, now: float) -> Decision:
        """The first decision of the registered checks that is not :data:`GO`."""
        for check in self.checks:
            try:
                decision = await check(job, now)
            except Exception:
                log.exception("release_check_failed", job_id=job.job_id)
                continue
            if isinstance(decision, HoldUntil) and decision.until <= now:
                continue
            if not isinstance(decision, Go):
                return decision
        return GO

    @property
    def held(self) -> Callable[[StoredJob, float, str], StoredJob]:
        """``held(job, until, reason)``: ``job`` to be added held until ``until`` for
        ``reason``, with its ``scheduled`` event (for ``Store.add_jobs``). Plain data over a
        module-level function: ``Store.add_admitted`` may run it in the writer process."""
        return partial(held_job, factory=self._factory)

    def scheduled(self, held_until: float) -> None:
        """A job was committed held until ``held_until``: re-arm the timer if sooner."""
        if held_until < self._armed:
            self._armed = held_until
            self._changed.set()

    async def hold(self, job: StoredJob, until: float, reason: str) -> bool:
        """Hold a queued (or held) job until ``until`` for ``reason``, with a new
        ``scheduled`` event; False if it was in another state (claimed, sent, final)."""
        at = timer_until(until, job.expires_at)
        done = await self._store.hold(
            job.job_id, at, reason, self._factory.scheduled(job, until), send_at=until
        )
        if done:
            self.scheduled(at)
            self._on_events()
        return done

    async def run(self) -> None:
        """The timer: sleep until the earliest held job is due (or an earlier one is
        held), release what is due, repeat. Runs until cancelled."""
        while True:
            self._changed.clear()
            try:
                due = await self._store.next_held()
            except StoreError as exc:
                log.warning("holds_read_failed", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            now = time.time()
            self._armed = float("inf") if due is None else due
            if due is None:
                await self._changed.wait()
            elif due > now:
                await wait_event(self._changed, min(due - now, RECHECK))
            else:
                try:
                    await self.release_due(now)
                except StoreError as exc:  # the jobs stay held: the next round retries
                    log.warning("holds_release_failed", error=str(exc))
                    await asyncio.sleep(1.0)
                except Exception:  # a bug must not stop every scheduled job for good
                    log.exception("holds_release_failed")
                    await asyncio.sleep(1.0)

    async def release_due(self, now: float) -> int:
        """Settle every held job due at ``now``, a batch at a time; returns how many were
        released into their lanes."""
        released = 0
        while True:
            jobs = await self._store.due_held(now, BATCH)
            go: list[str] = []
            for job in jobs:
                if job.expires_at is not None and job.expires_at - now < TTL_MARGIN:
                    await self._events.finished(
                        job.carrier,
                        job.outbound(),
                        "expired",
                        "ttl",
                        f"ttl passed while held ({job.hold_reason})",
                    )
                    continue
                decision = await self.check(job, now)
                if isinstance(decision, Go):
                    go.append(job.job_id)
                elif isinstance(decision, HoldUntil):
                    await self.hold(job, decision.until, decision.reason)
                else:
                    await self._events.finished(
                        job.carrier, job.outbound(), "rejected", decision.code, decision.reason
                    )
            moved = await self._store.release_held(go)
            for carrier in dict.fromkeys(carrier for carrier, _ in moved):
                self._on_released(carrier)
            released += len(moved)
            self.released += len(moved)
            if len(jobs) < BATCH:
                return released
