"""``store.writer: auto``: both writers on one SQLite file, one active at a time.

Real SQLite file, real writer thread and real child process. The switches are forced
(``AutoWriter.switch``) or made by a policy tuned to flap, under concurrent operations;
what must hold: every operation runs once and its caller hears once, in the order the
operations were submitted (the outbox ids they were given are increasing), and the
counters the store keeps equal a fresh count from the file.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sqlite3
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from smppgw.store import OutboxEvent, Store, StoreError
from smppgw.store.auto import AutoWriter, SwitchPolicy
from smppgw.store.process import ProcessWriter
from smppgw.store.writer import Writer
from store.conftest import fetch_all
from store.test_store import CARRIER, job, sleep_then_count

#: No switch by the load: the tests decide.
MANUAL = SwitchPolicy(up=math.inf, down=-1.0)


def auto_of(store: Store, policy: SwitchPolicy = MANUAL) -> AutoWriter:
    writer = store._writer
    assert isinstance(writer, AutoWriter)
    writer.set_policy(policy)
    return writer


async def switched(auto: AutoWriter, to: type[Writer | ProcessWriter]) -> None:
    """Ask for a switch to ``to`` (if not there) and wait until it happened."""
    if not isinstance(auto.active, to) and not auto.switching:
        auto.switch()
    for _ in range(500):
        if isinstance(auto.active, to) and not auto.switching:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no switch to {to.__name__}")


def fresh_counts(path: str) -> tuple[dict[tuple[str, int], int], int, dict[str, int]]:
    """Queue depths, outbox rows and held jobs, counted from the file (not the store)."""
    conn = sqlite3.connect(path)
    try:
        depths = {
            (carrier, lane): count
            for carrier, lane, count in conn.execute(
                "SELECT carrier, lane, count(*) FROM jobs WHERE state = 0 GROUP BY 1, 2"
            )
        }
        (outbox,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
        held = {
            reason or "": count
            for reason, count in conn.execute(
                "SELECT hold_reason, count(*) FROM jobs WHERE state = -1 GROUP BY 1"
            )
        }
    finally:
        conn.close()
    return depths, outbox, held


def event(i: int) -> OutboxEvent:
    return OutboxEvent(f"sms/status/e{i}", b"%d" % i)


async def test_forced_switches_both_ways_keep_order_and_exact_counters(tmp_path: Path) -> None:
    path = str(tmp_path / "gw.db")
    rounds, per_round = 12, 60
    submitted = 0
    async with Store(path, writer="auto") as store:
        auto = auto_of(store)
        assert isinstance(auto.active, Writer)
        ops_before = store.stats().operations
        answers: Counter[int] = Counter()
        pending: list[asyncio.Future[Any]] = []

        def heard(index: int, future: asyncio.Future[Any]) -> None:
            answers[index] += 1

        ids_in_order: list[asyncio.Future[list[int]]] = []
        for r in range(rounds):
            for i in range(per_round):
                n = r * per_round + i
                # Pipelined, never awaited one by one: several turns' worth are queued
                # at the active writer (or held by the switch) at any time.
                adds = store.add_jobs([job(f"j{n}", lane=n % 3)])
                events = store.add_events([event(n)])
                for index, fut in ((2 * n, asyncio.ensure_future(adds)),):
                    fut.add_done_callback(partial(heard, index))
                    pending.append(fut)
                ev = asyncio.ensure_future(events)
                ev.add_done_callback(partial(heard, 2 * n + 1))
                ids_in_order.append(ev)
                submitted += 2
                if i == per_round // 3:
                    auto.switch()  # while operations are queued at the active writer
                if i % 7 == 0:
                    await asyncio.sleep(0)  # let some go, some stay queued
            # A claim while the switch may still wait, too.
            if r % 2:
                claimed = asyncio.ensure_future(store.claim(CARRIER, 25, 0.0))
                pending.append(claimed)
                submitted += 1
            while auto.switching:  # the next round's switch goes back
                await asyncio.sleep(0.001)
        await asyncio.gather(*pending)
        ids = [fut.result()[0] for fut in await _all(ids_in_order)]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), "an event committed out of order"
        acked = await store.ack_events(ids[::2])
        assert acked == len(ids[::2])
        submitted += 1
        assert (auto.ups, auto.downs) == (rounds // 2, rounds // 2)
        assert set(answers.values()) == {1} and len(answers) == 2 * rounds * per_round
        # Each operation ran once: the batches counted exactly what was submitted.
        assert store.stats().operations - ops_before == submitted
        await switched(auto, ProcessWriter)
        assert await store.queue_depths() == fresh_counts(path)[0]
        assert await store.outbox_size() == fresh_counts(path)[1]
        await switched(auto, Writer)
        assert await store.queue_depths() == fresh_counts(path)[0]
        assert await store.outbox_size() == fresh_counts(path)[1]
        depths, outbox = await store.queue_depths(), await store.outbox_size()
    async with Store(path, writer="thread") as reopened:  # counted afresh at open
        assert await reopened.queue_depths() == depths
        assert await reopened.outbox_size() == outbox


async def _all(futures: list[asyncio.Future[list[int]]]) -> list[asyncio.Future[list[int]]]:
    await asyncio.gather(*futures)
    return futures


async def test_the_load_switches_up_and_back_down(tmp_path: Path) -> None:
    """Bursts of concurrent operations make batches of many: up; then single sequential
    operations (one a commit): down after ``down_ticks``."""
    path = str(tmp_path / "gw.db")
    async with Store(path, writer="auto") as store:
        auto = auto_of(store, SwitchPolicy(tick=0.05, up=8.0, down=1.5, down_ticks=3))
        for burst in range(40):
            await asyncio.gather(
                *(store.add_jobs([job(f"b{burst}-{i}")]) for i in range(100)),
                store.run(partial(sleep_then_count, seconds=0.005)),
            )
            if auto.ups:
                break
        assert auto.ups == 1 and isinstance(auto.active, ProcessWriter)
        for i in range(200):
            await store.add_jobs([job(f"s{i}")])
            if auto.downs:
                break
            await asyncio.sleep(0.005)
        assert auto.downs == 1 and isinstance(auto.active, Writer)
        assert await store.queue_depths() == fresh_counts(path)[0]


async def test_a_flapping_policy_under_concurrent_workers_stays_exact(tmp_path: Path) -> None:
    """Switches every tick or two while 30 workers add, claim, hold and ack: the
    counters end equal to the file, every job once, nothing lost or doubled.

    Each worker does at least 40 rounds and goes on (at most 400) until three switches
    each way have happened: on a fast machine 40 rounds can finish in five ticks."""
    path = str(tmp_path / "gw.db")
    async with Store(path, writer="auto") as store:
        auto = auto_of(store, SwitchPolicy(tick=0.01, up=1.0, down=math.inf, down_ticks=1))
        added: list[str] = []

        async def worker(w: int) -> None:
            for i in range(400):
                if i >= 40 and auto.ups >= 3 and auto.downs >= 3:
                    return
                job_id = f"w{w}-{i}"
                assert await store.add_jobs([job(job_id, lane=i % 3)]) == [True]
                added.append(job_id)
                await store.add_events([event(w * 1000 + i)])
                if i % 5 == 0:
                    await store.claim(CARRIER, 3, 0.0)
                if i % 4 == 0:
                    pending = await store.pending_events(2)
                    await store.ack_events([e.event_id for e in pending if e.event_id])

        await asyncio.gather(*(worker(w) for w in range(30)))
        assert auto.ups >= 3 and auto.downs >= 3, (auto.ups, auto.downs)
        rows = await store.run(partial(fetch_all, query="SELECT job_id FROM jobs"))
        assert sorted(r[0] for r in rows) == sorted(added)
        while auto.switching:
            await asyncio.sleep(0.01)
        depths, outbox, held = fresh_counts(path)
        assert await store.queue_depths() == depths
        assert await store.outbox_size() == outbox
        assert {k: v for k, v in store.held_counts().items() if v} == held


@pytest.mark.parametrize("active", ["process", "thread"])
async def test_a_killed_child_fails_every_caller_and_sets_writer_lost(
    tmp_path: Path, active: str
) -> None:
    """As in ``process`` mode, whichever writer was active: the gateway stops on it."""
    path = str(tmp_path / "gw.db")
    async with Store(path, writer="auto") as store:
        auto = auto_of(store)
        assert await store.add_jobs([job("a")]) == [True]
        await switched(auto, ProcessWriter if active == "process" else Writer)
        pid, lost = store.writer_pid, store.writer_lost
        assert pid is not None and lost is not None and not lost.is_set()
        seconds = 30.0 if active == "process" else 1.0
        busy = asyncio.ensure_future(store.run(partial(sleep_then_count, seconds=seconds)))
        queued = asyncio.ensure_future(store.add_jobs([job("b")]))
        await asyncio.sleep(0.3)
        if active == "process":
            os.kill(pid, signal.SIGKILL)
            for waiting in (busy, queued):
                with pytest.raises(StoreError, match="store writer process exited"):
                    await waiting
        else:
            busy.cancel()  # the thread: the sleep runs on; nobody waits for it
            os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(lost.wait(), 10)
        with pytest.raises(StoreError, match="store writer process exited"):
            await store.add_jobs([job("c")])
        auto.switch()  # a switch is refused after the loss: nothing is held forever
        with pytest.raises(StoreError, match="store writer process exited"):
            await store.add_jobs([job("d")])
    async with Store(path, writer="auto") as store:
        expect_b = [False] if active == "thread" else [True]  # committed / rolled back
        assert await store.add_jobs([job("b")]) == expect_b
        assert await store.add_jobs([job("a"), job("c"), job("d")]) == [False, True, True]


async def test_schema_created_once_and_both_connections_open(tmp_path: Path) -> None:
    path = str(tmp_path / "gw.db")
    async with Store(path, writer="auto") as store:
        auto = auto_of(store)
        assert store.writer_pid is not None
        await store.add_jobs([job("x")])
        await switched(auto, ProcessWriter)
        assert (await store.job("x")) is not None
        await switched(auto, Writer)
    assert not os.path.exists(path + "-wal") or os.path.getsize(path + "-wal") == 0
