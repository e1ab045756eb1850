"""Store → carrier: keeps one carrier's in-memory lanes topped up from the durable queue.

The queue lives in SQLite (a million jobs must not sit in RAM); the carrier holds only
what it can send in the next second or two. The feeder claims jobs lane by lane (high
first), so an OTP published behind a 100k campaign is claimed at the next top-up, and the
carrier's own lanes then put it ahead of every normal or low job it already holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from smppgw.aio import wait_event
from smppgw.outbound import OutboundMessage
from smppgw.store import Store, StoredJob, StoreError

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


class Feeder:
    def __init__(
        self,
        name: str,
        store: Store,
        carrier: Sink,
        *,
        on_claimed: Callable[[StoredJob], None] | None = None,
    ) -> None:
        self.name = name
        self._store = store
        self._carrier = carrier
        self._on_claimed = on_claimed
        self._wakeup = asyncio.Event()
        self._stopping = False
        self.claimed = 0

    def wake(self) -> None:
        """A job for this carrier was committed: look at the queue now."""
        self._wakeup.set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        while not self._stopping:
            room = self._carrier.wants()
            if room <= 0:
                await asyncio.sleep(POLL)
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
                if self._on_claimed is not None:
                    self._on_claimed(job)
                self._carrier.submit(job.outbound())
            self.claimed += len(jobs)
            if len(jobs) < min(room, CLAIM_LIMIT):
                await self._sleep(await self._idle_for())

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
