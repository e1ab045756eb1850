"""``kill -9`` of the gateway while jobs fail over from carrier A to carrier B.

Two ``smppgw sim`` processes: A (viettel) refuses every number under 8498111 with
ESME_RINVDSTADR (ported numbers, one per job so that every one is refused once and moved),
B (vinaphone) takes everything. The gateway is killed at random moments and restarted on
the same store. Expected: every job reaches exactly one final status and no job reaches the
SMSCs twice, counting A's and B's records together (a job killed between A's refusal and
its move ends ``unknown_outcome``, never sent again).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from reliability.conftest import size
from reliability.stack import GatewayProc, Observer, SimProc, assert_settled, carrier_entry, job
from support.broker import Mosquitto


async def test_kill9_during_failover_sends_each_job_once(
    tmp_path: Path, mosquitto: Mosquitto, report
) -> None:
    kills = size(3, 30)
    n_jobs = size(400, 6_000)
    rate = 100.0
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    sim_a = SimProc(
        tmp_path / "sim-a", name="viettel", receipt_delay=0.3, reject_dest={"8498111": 11}
    ).start()
    sim_b = SimProc(tmp_path / "sim-b", name="vinaphone", receipt_delay=0.3).start()
    gw = GatewayProc(
        tmp_path / "gw",
        mosquitto,
        [
            carrier_entry(
                sim_a,
                tps=150,
                failover=["vinaphone"],
                failover_on=["ESME_RINVDSTADR"],
            ),
            carrier_entry(sim_b, tps=150, prefixes=["8491"]),
        ],
    )
    ids = [f"f-{i:06d}" for i in range(n_jobs)]

    def number(i: int) -> str:
        # Odd jobs: a ported number of their own (refused by A, moved to B); even: A's.
        return f"098111{i:04d}" if i % 2 else f"098222{i:04d}"

    try:
        async with Observer(mosquitto) as obs:
            await gw.start()

            async def publish() -> None:
                started = time.monotonic()
                for start in range(0, n_jobs, 10):
                    await obs.publish_many(
                        job("f", i, to=number(i)) for i in range(start, min(start + 10, n_jobs))
                    )
                    delay = started + (start + 10) / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)

            publisher = asyncio.create_task(publish())
            for _ in range(kills):
                await asyncio.sleep(rng.uniform(0.3, 1.5))
                gw.kill9()
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                await gw.start()
            await publisher
            await obs.wait_final(ids, timeout=size(60, 300))
            await sim_a.wait_quiet(timeout=60)
            await sim_b.wait_quiet(timeout=60)
            assert await gw.terminate() == 0
            await asyncio.sleep(0.3)
            submits_a, submits_b = await sim_a.asubmits(), await sim_b.asubmits()
            refused = (await sim_a.astats())["submits_rejected"]
    finally:
        gw.close()
        sim_a.stop()
        sim_b.stop()
    ported_to_a = [s for s in submits_a if s.destination.startswith("8498111")]
    moved_ok = sum(1 for s in submits_b if s.destination.startswith("8498111"))
    ledger = assert_settled(
        ids,
        obs,
        submits_a + submits_b,
        scenario="kill -9 of the gateway during failover",
        report=report,
        store=gw.read_store(),
        seed=seed,
        kills=gw.kills,
        refused_by_a=refused,
        delivered_by_b_after_refusal=moved_ok,
    )
    # A accepted none of the numbers it refuses; B took them (all but unknown outcomes).
    assert not ported_to_a
    assert moved_ok >= n_jobs // 2 - ledger.failed_codes.get("unknown_outcome", 0)
