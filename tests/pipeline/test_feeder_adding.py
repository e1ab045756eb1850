"""Feeder: woken as intake queues a batch, its claim rides behind the batch's insert.

``Feeder.adding()`` is called in the same step that queues intake's insert to the store;
the feeder's claim, queued in the next turn, runs after the insert in the store's order
(and, with the writer process, in the same transaction), so a job reaches the carrier one
store round trip after it was taken instead of two. ``Feeder.committed()`` then wakes
the feeder only if no claim was queued after the batch. A real SQLite store; the
carrier is a stand-in that holds what it is given and sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from smppgw.engine.message import OutboundMessage, Priority
from smppgw.pipeline.feeder import Feeder
from smppgw.store import Store, StoredJob
from smppgw.store.api import WriterMode

TARGET = 10


class Carrier:
    """Wants ``TARGET`` jobs in memory and never sends one; notes the store's commit
    count when each job arrives."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.held: list[OutboundMessage] = []
        self.commits_at: dict[str, int] = {}

    def wants(self) -> int:
        return max(0, TARGET - len(self.held))

    def submit(self, message: OutboundMessage) -> None:
        self.held.append(message)
        self.commits_at[message.job_id] = self.store.stats().commits

    def backlog(self) -> dict[Priority, int]:
        return {p: sum(1 for m in self.held if m.priority == p) for p in Priority}


def job(job_id: str, lane: Priority = Priority.NORMAL) -> StoredJob:
    return StoredJob(
        job_id=job_id, carrier="c", lane=int(lane), destination="84912345678", text="x"
    )


@pytest.fixture(params=["process", "thread"])
async def store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    mode: WriterMode = request.param
    async with Store(str(tmp_path / "q.db"), writer=mode) as s:
        yield s


@contextlib.asynccontextmanager
async def feeding(store: Store, carrier: Carrier) -> AsyncIterator[Feeder]:
    feeder = Feeder("c", store, carrier)
    task = asyncio.create_task(feeder.run())
    try:
        yield feeder
    finally:
        feeder.stop()
        await asyncio.wait_for(task, 5)


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def settle(store: Store) -> None:
    """Until the feeder's follow-up questions (``next_due`` after a short claim) are
    answered and nothing more is asked for 50 ms."""
    seen = -1
    while store.stats().operations != seen:
        seen = store.stats().operations
        await asyncio.sleep(0.05)


async def intake_commit(feeder: Feeder, store: Store, jobs: Sequence[StoredJob]) -> list[bool]:
    """What ``Intake._commit`` does: announce, then queue the insert in the same step."""
    feeder.adding()
    added = await store.add_jobs(jobs)
    feeder.committed()
    return added


async def test_a_job_announced_by_intake_is_claimed_behind_its_insert(store: Store) -> None:
    carrier = Carrier(store)
    async with feeding(store, carrier) as feeder:
        await settle(store)  # the feeder's first claim found nothing; it sleeps (1 s)
        before = store.stats()
        added = await asyncio.create_task(intake_commit(feeder, store, [job("j1"), job("j2")]))
        assert added == [True, True]
        await until(lambda: len(carrier.held) == 2)
        assert [m.job_id for m in carrier.held] == ["j1", "j2"]
        await settle(store)
        after = store.stats()
    if store.writer_mode == "process":
        # The insert and the claim went in one frame and one transaction: the carrier
        # had its jobs after the first commit since the batch was queued.
        assert carrier.commits_at["j1"] == before.commits + 1
    # insert, claim, and the next_due a short claim asks: nothing more. Without the
    # announcement, or if committed() woke the feeder anyway, a second claim (and its
    # next_due) would follow.
    assert after.operations - before.operations == 3
    assert feeder.claimed == 2


async def test_an_announced_urgent_job_still_reaches_a_full_carrier(store: Store) -> None:
    """With the carrier full, the wake-up from ``adding()`` comes before the commit, when
    the queue's depths do not show the job yet; ``committed()`` must wake it again."""
    await store.add_jobs([job(f"low-{i}", Priority.LOW) for i in range(30)])
    carrier = Carrier(store)
    async with feeding(store, carrier) as feeder:
        await until(lambda: len(carrier.held) == TARGET)
        await settle(store)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.create_task(intake_commit(feeder, store, [job("otp", Priority.HIGH)]))
        await until(lambda: any(m.job_id == "otp" for m in carrier.held))
        assert loop.time() - started < 0.5
    assert len(carrier.held) == TARGET + 1


async def test_a_paused_feeder_claims_announced_jobs_on_resume(store: Store) -> None:
    carrier = Carrier(store)
    async with feeding(store, carrier) as feeder:
        await settle(store)
        feeder.pause()
        await asyncio.create_task(intake_commit(feeder, store, [job("p1")]))
        await asyncio.sleep(0.1)
        assert carrier.held == []
        feeder.resume()
        await until(lambda: [m.job_id for m in carrier.held] == ["p1"])
