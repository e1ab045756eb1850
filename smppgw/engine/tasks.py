"""The carrier's background work: outcome events that must land, and arming batches.

Outcome events are awaited until they succeed (:meth:`Background.durably`): a failed store
write must not lose an outcome, so it is retried with back-off rather than dropped. The
tasks are kept so that :meth:`Carrier.stop` can wait for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from smppgw.aio import RunningLoop
from smppgw.engine.observers import CarrierStats
from smppgw.ops.logs import get_logger

log = get_logger("smppgw.carrier")


class Background:
    """Tasks of one carrier, and the retry loop for events that must not be lost."""

    __slots__ = ("_counters", "_name", "_running", "tasks")

    def __init__(self, carrier: str, counters: CarrierStats) -> None:
        self._name = carrier
        self._counters = counters
        self.tasks: set[asyncio.Task[Any]] = set()
        self._running = RunningLoop()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._running().create_task(coro)  # not ensure_future's checks
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def durably(self, call: Callable[[], Awaitable[None]], what: str) -> None:
        """Await an outcome event, retrying while it fails: an outcome must not be lost."""
        delay = 0.1
        while True:
            try:
                await call()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self._counters.event_errors += 1
                log.exception("outcome event failed; retrying", carrier=self._name, job_id=what)
                await asyncio.sleep(delay)
                delay = min(delay * 2.0, 5.0)

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the tasks; cancel (and log) what is left."""
        if not self.tasks:
            return
        _done, pending = await asyncio.wait(list(self.tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.error(
                "outcome events still pending at stop", carrier=self._name, count=len(pending)
            )
            await asyncio.wait(pending)
