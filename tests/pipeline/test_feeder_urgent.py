"""Feeder: a job more urgent than what a full carrier holds is claimed at once.

A real SQLite store; the carrier is a stand-in that holds what it is given and sends
nothing, so "the carrier is full" lasts as long as the test wants.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from smppgw.engine.message import OutboundMessage, Priority
from smppgw.pipeline.feeder import Feeder
from smppgw.store import Store, StoredJob

TARGET = 10


class FullCarrier:
    """Wants ``TARGET`` jobs in memory and never sends one."""

    def __init__(self) -> None:
        self.held: list[OutboundMessage] = []

    def wants(self) -> int:
        return max(0, TARGET - len(self.held))

    def submit(self, message: OutboundMessage) -> None:
        self.held.append(message)

    def backlog(self) -> dict[Priority, int]:
        return {p: sum(1 for m in self.held if m.priority == p) for p in Priority}


def job(job_id: str, lane: Priority) -> StoredJob:
    return StoredJob(
        job_id=job_id, carrier="c", lane=int(lane), destination="84912345678", text="x"
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store(str(tmp_path / "q.db")) as s:
        yield s


@contextlib.asynccontextmanager
async def feeding(store: Store, carrier: FullCarrier) -> AsyncIterator[Feeder]:
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


async def test_high_job_reaches_a_full_carrier_without_waiting_for_room(store: Store) -> None:
    await store.add_jobs([job(f"low-{i}", Priority.LOW) for i in range(50)])
    carrier = FullCarrier()
    async with feeding(store, carrier) as feeder:
        await until(lambda: len(carrier.held) == TARGET)
        await store.add_jobs([job("otp", Priority.HIGH)])
        loop = asyncio.get_running_loop()
        committed = loop.time()
        feeder.wake()
        await until(lambda: any(m.job_id == "otp" for m in carrier.held))
        # Claimed within a few store round trips, not at the next poll of a full carrier.
        assert loop.time() - committed < 0.5
        await asyncio.sleep(0.05)
    # The overshoot is the urgent job alone: no low job rode along.
    assert [m.job_id for m in carrier.held if m.priority == Priority.LOW] == [
        f"low-{i}" for i in range(TARGET)
    ]
    assert len(carrier.held) == TARGET + 1


async def test_full_carrier_takes_nothing_when_the_new_job_is_not_more_urgent(
    store: Store,
) -> None:
    await store.add_jobs([job(f"n-{i}", Priority.NORMAL) for i in range(20)])
    carrier = FullCarrier()
    async with feeding(store, carrier) as feeder:
        await until(lambda: len(carrier.held) == TARGET)
        await store.add_jobs([job("late-normal", Priority.NORMAL), job("bulk", Priority.LOW)])
        feeder.wake()
        await asyncio.sleep(0.1)
        assert len(carrier.held) == TARGET
        # Once room opens, the queue order holds: the oldest normal job is next.
        carrier.held.pop(0)
        await until(lambda: len(carrier.held) == TARGET)
        assert carrier.held[-1].job_id == f"n-{TARGET}"
