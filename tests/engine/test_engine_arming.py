"""No submit_sm leaves before the gateway has durably recorded that it may
(docs/architecture.md, invariant "no double send": after a crash, a job whose submit may
have left is known as such and not sent again)."""

from __future__ import annotations

import asyncio

from smppgw.engine.lanes import arming_plan
from smppgw.engine.message import Priority

from engine.conftest import CarrierFactory, Recorder, SimFactory, message, until


async def test_no_part_leaves_before_sending_returned(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim()
    carrier = await make_carrier(sim)
    recorder.delay["sending"] = 0.3
    carrier.submit(message(1, text="x" * 300))  # two parts
    await asyncio.sleep(0.15)
    assert sim.submits == [] and recorder.running.get("sending") == 1
    await until(lambda: len(sim.submits) == 2, timeout=3)
    assert recorder.armed == ["j1"]


async def test_failed_sending_record_is_retried_and_the_job_sent_once(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim()
    carrier = await make_carrier(sim)
    recorder.fail["sending"] = 2
    for i in range(5):
        carrier.submit(message(i))
    await until(lambda: len(recorder.of("submitted")) == 5, timeout=5)
    assert sorted(s.pdu.short_message for s in sim.submits) == [
        f"message {i}".encode() for i in range(5)
    ]
    assert recorder.armed == [f"j{i}" for i in range(5)]


async def test_jobs_are_armed_in_batches_highest_lane_first(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim()
    carrier = await make_carrier(sim, tps=1000, window=50)
    recorder.delay["sending"] = 0.05
    for i in range(100):
        carrier.submit(message(i, priority=Priority.LOW))
    carrier.submit(message(1000, priority=Priority.HIGH))
    await until(lambda: len(recorder.of("submitted")) == 101, timeout=10)
    assert recorder.armed[0] == "j1000"
    calls = recorder.running  # every call finished
    assert calls.get("sending") == 0
    assert len(recorder.armed) == 101


def test_a_second_batch_goes_ahead_only_when_50_ms_at_the_rate_covers_two() -> None:
    assert arming_plan(100_000.0, 100) == (200, 2)
    assert arming_plan(8_000.0, 100) == (200, 2)  # 50 ms = 400 jobs
    assert arming_plan(7_999.0, 100) == (200, 1)
    assert arming_plan(1_000.0, 50) == (50, 1)
    assert arming_plan(100.0, 10) == (10, 1)


async def test_at_a_high_rate_two_batches_are_armed_at_once_and_nothing_leaves_before(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim()
    carrier = await make_carrier(sim, tps=100_000, window=10)
    recorder.delay["sending"] = 0.3
    for i in range(1000):
        carrier.submit(message(i))
    await until(lambda: recorder.running.get("sending") == 2, timeout=2)
    await asyncio.sleep(0.1)
    assert recorder.running.get("sending") == 2  # never a third
    assert sim.submits == []
    await until(lambda: len(recorder.of("submitted")) == 1000, timeout=20)
    assert recorder.armed == [f"j{i}" for i in range(1000)]
    assert len(sim.submits) == 1000


async def test_at_a_low_rate_one_batch_is_armed_at_a_time(
    make_sim: SimFactory, make_carrier: CarrierFactory, recorder: Recorder
) -> None:
    sim = await make_sim()
    carrier = await make_carrier(sim, tps=1000, window=50)
    recorder.delay["sending"] = 0.05
    most = 0

    async def watch() -> None:
        nonlocal most
        while True:
            most = max(most, recorder.running.get("sending", 0))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    for i in range(200):
        carrier.submit(message(i))
    await until(lambda: len(recorder.of("submitted")) == 200, timeout=10)
    watcher.cancel()
    assert most == 1
