"""Priority lanes, and arming: which job goes next, and whether it may go yet.

The lanes are served strictly (``high`` before ``normal`` before ``low``); within a lane in
arrival order, except that a job coming back (throttled, or its retry due) goes ahead of
every younger job. Arming is the durable "about to send" record (``events.sending``) made
ahead of the sends in small batches, highest lanes first: after a kill -9 every armed but
unsent job counts as an unknown outcome, so only about 50 ms of sending is armed at a time.

At a high rate one batch in flight was the carrier's limit: the record's round trip to the
store (waiting for the writer's batch in progress, then its own) took 15-40 ms while the
armed jobs left lasted ~14 ms, and the dispatcher stood with the window mostly empty. So up
to ``depth`` batches go ahead together when the rate allows that much within the ~50 ms
(:func:`arming_plan`), and the next batch starts while the previous is still on its way.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from smppgw.engine.job import SendJob
from smppgw.engine.message import Priority
from smppgw.engine.observers import CarrierEvents
from smppgw.ops.logs import get_logger

log = get_logger("smppgw.carrier")

#: Seconds before a failed ``events.sending`` call is tried again.
ARM_RETRY = 0.5


class Lanes:
    """The jobs waiting to send a part, one deque per priority."""

    __slots__ = ("_lanes", "_on_change")

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._lanes: tuple[deque[SendJob], ...] = tuple(deque() for _ in Priority)
        self._on_change = on_change

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes)

    def backlog(self) -> dict[Priority, int]:
        return {p: len(self._lanes[p]) for p in Priority}

    def append(self, job: SendJob) -> None:
        """A new job, at the tail of its lane."""
        self._lanes[job.lane].append(job)
        job.queued = True
        self._on_change()

    def head(self, closing: bool) -> SendJob | None:
        """The job whose part goes next; while closing, only jobs already started."""
        if closing:
            for lane in self._lanes:
                for job in lane:
                    if job.started:
                        return job
            return None
        for lane in self._lanes:
            if lane:
                return lane[0]
        return None

    def unstarted(self, max_lane: int) -> list[SendJob]:
        """Queued jobs of lanes up to ``max_lane`` that have written nothing yet."""
        return [
            job
            for lane in self._lanes[: max_lane + 1]
            for job in lane
            if not job.started and job.failure is None and job.retry is None and not job.reported
        ]

    def remove(self, job: SendJob) -> None:
        if not job.queued:
            return
        lane = self._lanes[job.lane]
        if lane and lane[0] is job:
            lane.popleft()
        else:
            lane.remove(job)
        job.queued = False

    def requeue_front(self, job: SendJob) -> None:
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
        self._on_change()


def arming_plan(tps: float, window: int) -> tuple[int, int]:
    """``(batch, depth)``: jobs per "sending" record, and how many records may be on their
    way at once. About 50 ms of sending at ``tps`` per batch (at least a window, 8 to 200);
    a second batch in flight only when 50 ms at ``tps`` covers two, so a slow carrier never
    has more armed than before."""
    batch = max(8, min(200, int(tps * 0.05)), window)
    depth = 2 if tps * 0.05 >= 2 * batch else 1
    return batch, depth


class Arming:
    """Records jobs as "sending" ahead of their first submit_sm, ``depth`` batches at most
    on their way at a time."""

    __slots__ = (
        "_arming",
        "_events",
        "_flying",
        "_name",
        "_on_change",
        "_pending",
        "_ready",
        "_spawn",
        "batch",
        "depth",
    )

    def __init__(
        self,
        carrier: str,
        events: CarrierEvents,
        batch: int,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        on_change: Callable[[], None],
        depth: int = 1,
    ) -> None:
        self._name = carrier
        self._events = events
        self.batch = batch
        self.depth = depth
        self._spawn = spawn
        self._on_change = on_change
        #: Jobs not yet armed, per lane, in arrival order.
        self._pending: tuple[deque[SendJob], ...] = tuple(deque() for _ in Priority)
        #: "sending" records on their way to the store, and the jobs in them.
        self._flying = 0
        self._arming = 0
        #: Armed jobs not yet started: when it runs low the next batch is armed ahead.
        self._ready = 0

    def add(self, job: SendJob) -> None:
        self._pending[job.lane].append(job)

    def request(self) -> None:
        """The head job is not armed: arm the next batch unless ``depth`` are on their way
        (and, at a cold start, the batches ahead at once)."""
        if self._flying < self.depth and self._start():
            self._top_up()

    def started(self) -> None:
        """An armed job sent its first part: arm ahead when few armed jobs are left."""
        self._ready -= 1
        self._top_up()

    def _top_up(self) -> None:
        """Start batches while fewer than ``depth`` are on their way and the armed or
        arming jobs are below half a batch beyond the ``depth - 1`` batches ahead."""
        low = self.batch * (self.depth - 1) + self.batch // 2
        while self._flying < self.depth and self._ready + self._arming < low:
            if not self._start():
                return

    def _start(self) -> bool:
        """Arm the next batch (highest lanes first); False when nothing waits for it."""
        batch: list[SendJob] = []
        for pending in self._pending:
            while pending and len(batch) < self.batch:
                job = pending.popleft()
                if job.queued and not job.armed and job.failure is None:
                    batch.append(job)
        if batch:
            self._flying += 1
            self._arming += len(batch)
            self._spawn(self._arm(batch))
            return True
        return False

    async def _arm(self, batch: list[SendJob]) -> None:
        try:
            await self._events.sending(self._name, [job.job_id for job in batch])
        except Exception as exc:
            log.warning(
                "sending_record_failed", carrier=self._name, jobs=len(batch), error=str(exc)
            )
            for job in reversed(batch):
                self._pending[job.lane].appendleft(job)
            await asyncio.sleep(ARM_RETRY)
        else:
            for job in batch:
                job.armed = True
            self._ready = max(0, self._ready) + len(batch)
        finally:
            self._flying -= 1
            self._arming -= len(batch)
            self._on_change()
