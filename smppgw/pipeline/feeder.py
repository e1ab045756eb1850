"""Store → carrier: keeps one carrier's in-memory lanes topped up from the durable queue.

The queue lives in SQLite (a million jobs must not sit in RAM); the carrier holds only
what it can send in the next second or two. The feeder claims jobs lane by lane (high
first), and the carrier's own lanes then put an OTP ahead of every normal or low job it
already holds.

While the carrier is full, a job committed to a *more urgent* lane than the least urgent
one the carrier holds is claimed at once, over the carrier's target: waiting for the next
top-up (the next token, after the next low job went) cost an OTP behind a campaign a whole
token interval, so at 100 TPS it reached the SMSC 10-20 ms after it was committed instead
of at the next token. The overshoot is bounded by the urgent jobs themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Protocol

import structlog

from smppgw.aio import wait_event
from smppgw.engine.message import OutboundMessage, Priority
from smppgw.store import StoreAPI, StoreError

log = structlog.get_logger("smppgw.feeder")

#: Most jobs claimed in one store round trip.
CLAIM_LIMIT = 1000
#: How often a full carrier is asked again whether it has room, in seconds. Short enough
#: that a high-priority job is claimed within a fraction of a token interval.
POLL = 0.002
#: Longest sleep with nothing to claim (retry timers are re-checked at least this often).
IDLE = 1.0


class Sink(Protocol):
    def wants(self) -> int: ...

    def submit(self, message: OutboundMessage) -> None: ...

    def backlog(self) -> Mapping[Priority, int]: ...


class Feeder:
    def __init__(self, name: str, store: StoreAPI, carrier: Sink) -> None:
        self.name = name
        self._store = store
        self._carrier = carrier
        self._wakeup = asyncio.Event()
        #: Resolved by wake() while the feeder naps with the carrier full.
        self._nap: asyncio.Future[None] | None = None
        self._stopping = False
        #: Set while not paused (``smppgw ctl pause``): the loop waits on it before a claim.
        self._running = asyncio.Event()
        self._running.set()
        #: Set by failover while the carrier is down and its jobs go elsewhere.
        self._diverted = False
        self.claimed = 0

    def wake(self) -> None:
        """A job for this carrier was committed: look at the queue now."""
        self._wakeup.set()
        nap = self._nap
        if nap is not None and not nap.done():
            nap.set_result(None)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        self._running.set()
        self.wake()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> None:
        """Claim nothing more until :meth:`resume` (an operator's ``smppgw ctl pause``):
        the carrier's queue stays in the store, where ``jobs cancel`` can still reach it."""
        self._running.clear()
        self.wake()

    def resume(self) -> None:
        self._running.set()
        self.wake()

    def divert(self, diverted: bool) -> None:
        """Claim nothing while ``diverted`` (failover: the carrier has had no bind for
        ``failover_after`` and its queued jobs move to other carriers), apart from the
        operator's pause."""
        self._diverted = diverted
        self.wake()

    async def run(self) -> None:
        while not self._stopping:
            if not self._running.is_set():
                await self._running.wait()
                continue
            room = 0 if self._diverted else self._carrier.wants()
            urgent = room <= 0
            if urgent:
                if not await self._napped(POLL):
                    continue
                room = await self._urgent()
                if room <= 0:
                    continue
            self._wakeup.clear()
            try:
                jobs = await self._store.claim(self.name, min(room, CLAIM_LIMIT), time.time())
            except StoreError as exc:
                log.warning("claim_failed", carrier=self.name, error=str(exc))
                await self._sleep(1.0)
                continue
            if self.stopping:
                # Claimed while stopping: give them straight back, in order.
                await self._release([j.job_id for j in jobs])
                return
            for job in jobs:
                self._carrier.submit(job.outbound())  # the StoredJob travels with it
            self.claimed += len(jobs)
            if len(jobs) < min(room, CLAIM_LIMIT) and not urgent:
                await self._sleep(await self._idle_for())

    async def _napped(self, seconds: float) -> bool:
        """Sleep ``seconds``; True if a wake-up (a job committed) cut the sleep short.

        A future and a timer rather than ``wait_event``: this runs every ``POLL`` while a
        carrier is full, and ``asyncio.wait_for`` costs a task per call."""
        if self._wakeup.is_set():
            self._wakeup.clear()
            return True
        loop = asyncio.get_running_loop()
        nap: asyncio.Future[None] = loop.create_future()
        self._nap = nap
        timer = loop.call_later(seconds, _timeout, nap)
        try:
            await nap
        finally:
            timer.cancel()
            self._nap = None
        woken = self._wakeup.is_set()
        self._wakeup.clear()
        return woken

    async def _urgent(self) -> int:
        """How many queued jobs are in a lane more urgent than the least urgent job the
        (full) carrier holds: those go to it now rather than at its next top-up."""
        held = self._carrier.backlog()
        lowest = max((int(lane) for lane, n in held.items() if n), default=None)
        if lowest is None or lowest == 0:
            return 0
        try:
            depths = await self._store.queue_depths()
        except StoreError:
            return 0
        name = self.name
        return sum(n for (carrier, lane), n in depths.items() if carrier == name and lane < lowest)

    async def _idle_for(self) -> float:
        """Sleep until the next retry is due, a wake-up, or ``IDLE``."""
        try:
            due = await self._store.next_due(self.name)
        except StoreError:
            return IDLE
        if due is None:
            return IDLE
        return max(0.0, min(IDLE, due - time.time()))

    async def _sleep(self, seconds: float) -> None:
        await wait_event(self._wakeup, seconds)

    async def _release(self, job_ids: list[str]) -> None:
        if job_ids:
            try:
                await self._store.release(job_ids)
            except StoreError as exc:  # recover() re-queues them at the next start
                log.warning("release_failed", carrier=self.name, error=str(exc))


def _timeout(nap: asyncio.Future[None]) -> None:
    if not nap.done():
        nap.set_result(None)
