"""``AutoWriter``: the store's writer follows the load (``store.writer: auto``).

Why: the writer as a child process (``ProcessWriter``) lets the event loop and SQLite run
on two cores, which is +14–25 % jobs/s flat out; at lower rates the writer thread
(``Writer``) costs less CPU per job (no frame each way, no wake-up of a second process per
commit; docs/performance.md steps 22, 55 and 60–69). So both are opened on the same SQLite
(WAL) file at start, and every operation goes to ONE of them, the active one.

Order across the two: a switch happens only at a quiescent point, when every operation
the active writer was given has been answered (its transaction committed or failed and
its future resolved). Operations that arrive while a switch waits for that are held here,
in order, and then handed to the new writer with the futures their callers already have.
So no operation of the new writer can commit before one the old writer still had, and the
counters the store keeps (applied per batch before its callers hear) see the batches in
commit order.

When to switch: the load signal is how many operations the recent commits carried (both
writers count into one ``BatchStats``). A writer that keeps up commits a few operations at
a time; one that falls behind gathers everything that waited into its next batch. So the
thread hands over to the process as soon as a short window's commits average ``up``
operations or more (the thread is the bottleneck: the process would take the writer off
the event loop's core), and the process hands back only after ``down_ticks`` windows in a
row averaged ``down`` or fewer (or had no commit at all): the gap between the two and the
longer wait downwards are the hysteresis that keeps it from flapping.

The child is the store's as in ``process`` mode: if it dies, its callers get a
``StoreError``, every later operation fails (whichever writer was active: the gateway's
counters may no longer match the file) and ``lost_event`` stops the gateway.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from smppgw.ops.logs import get_logger
from smppgw.store.batch import BatchStats, Tx
from smppgw.store.model import StoreError, StoreStats
from smppgw.store.process import ProcessWriter
from smppgw.store.writer import Writer, stats_of

T = TypeVar("T")
log = get_logger("smppgw.store")
#: See ``SwitchPolicy.from_env``.
ENV = "SMPPGW_STORE_AUTO"


@dataclass(frozen=True, slots=True)
class SwitchPolicy:
    """When ``AutoWriter`` switches (see the module docstring; figures in
    docs/performance.md, step 62)."""

    #: Seconds between two looks at the recent commits.
    tick: float = 0.25
    #: Thread → process when a tick's commits averaged at least this many operations.
    up: float = 24.0
    #: Process → thread when ``down_ticks`` ticks in a row averaged at most this many.
    down: float = 6.0
    down_ticks: int = 8

    @classmethod
    def from_env(cls) -> SwitchPolicy:
        """The defaults, or ``SMPPGW_STORE_AUTO=tick,up,down,down_ticks`` (for tests that
        make a gateway process flap, and for measuring other thresholds; not a setting)."""
        raw = os.environ.get(ENV)
        if not raw:
            return cls()
        tick, up, down, down_ticks = raw.split(",")
        return cls(float(tick), float(up), float(down), int(down_ticks))


class AutoWriter:
    """Routes ``submit`` to the active writer; ``start()`` opens both (thread first)."""

    def __init__(
        self,
        thread: Writer,
        process: ProcessWriter,
        stats: BatchStats,
        policy: SwitchPolicy | None = None,
    ) -> None:
        """``stats`` is the one both writers were given."""
        self.thread = thread
        self.process = process
        self._stats = stats
        self.policy = policy or SwitchPolicy.from_env()
        self.active: Writer | ProcessWriter = thread
        #: While a switch waits for quiescence: the operations held meanwhile, in order.
        self._held: list[tuple[Callable[[Tx], Any], asyncio.Future[Any]]] | None = None
        self._target: Writer | ProcessWriter | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._seen = (0, 0)
        self._low = 0
        self._closed = True
        #: Switches made so far, each way (for tests and the log).
        self.ups = 0
        self.downs = 0

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Open the thread's connection (creates or upgrades the schema, reads the
        counters), then the child's (finds the schema current)."""
        await self.thread.start()
        try:
            await self.process.start()
        except BaseException:
            await self.thread.stop()
            raise
        self._closed = False
        self._seen = (self._stats.commits + self._stats.failed, self._stats.operations)
        self._ticker = asyncio.get_running_loop().call_later(self.policy.tick, self._tick)

    async def stop(self) -> None:
        """Let a switch in progress finish, then stop the idle writer and the active one
        (each commits what it was given and checkpoints; the last one sees no other
        connection open)."""
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._held is not None:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def quiet() -> None:
                if not done.done():
                    done.set_result(None)

            self.active.on_drained(quiet)  # after the switch's own callback
            await done
            self._complete()
        idle = self.process if self.active is self.thread else self.thread
        try:
            await idle.stop()
        finally:
            await self.active.stop()

    def stats(self) -> StoreStats:
        return stats_of(self._stats)

    @property
    def lost(self) -> str | None:
        return self.process.lost

    # -- operations ------------------------------------------------------------------
    def submit(self, fn: Callable[[Tx], T]) -> asyncio.Future[T]:
        held = self._held
        if held is None and not self._closed and self.process.lost is None:
            return self.active.submit(fn)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if self.process.lost is not None:
            future.set_exception(StoreError(self.process.lost))
        elif held is not None:
            held.append((fn, future))
        else:
            future.set_exception(StoreError("store is not open"))
        return future

    def switch(self) -> None:
        """Hand over to the other writer at the next quiescent point (tests force switches
        with this; the load policy calls it from its tick)."""
        if self._held is not None or self._closed or self.process.lost is not None:
            return
        self._target = self.process if self.active is self.thread else self.thread
        self._held = []
        self.active.on_drained(self._complete)

    def set_policy(self, policy: SwitchPolicy) -> None:
        """A new policy, its first tick one ``policy.tick`` from now (tests)."""
        self.policy = policy
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = asyncio.get_running_loop().call_later(policy.tick, self._tick)

    @property
    def switching(self) -> bool:
        return self._held is not None

    def _complete(self) -> None:
        """Quiescent: the target becomes active and gets what was held, in order."""
        held, target = self._held, self._target
        if held is None or target is None:
            return
        self._held = None
        self._target = None
        self.active = target
        if target is self.process:
            self.ups += 1
        else:
            self.downs += 1
        self._low = 0
        log.info(
            "store writer switched",
            to="process" if target is self.process else "thread",
            held=len(held),
        )
        for fn, future in held:
            if self.process.lost is not None:
                future.set_exception(StoreError(self.process.lost))
            else:
                target.put(fn, future)

    # -- the load policy -------------------------------------------------------------
    def _tick(self) -> None:
        policy = self.policy
        self._ticker = asyncio.get_running_loop().call_later(policy.tick, self._tick)
        stats = self._stats
        commits, operations = stats.commits + stats.failed, stats.operations
        last_commits, last_operations = self._seen
        self._seen = (commits, operations)
        if self._held is not None or self.process.lost is not None:
            return
        batches = commits - last_commits
        per_batch = (operations - last_operations) / batches if batches else 0.0
        if self.active is self.thread:
            if per_batch >= policy.up:
                self.switch()
            return
        self._low = self._low + 1 if per_batch <= policy.down else 0
        if self._low >= policy.down_ticks:
            self.switch()
