"""Scenario 1: ``kill -9`` of the gateway at random moments while jobs, submit responses,
receipts and MO flow; restart on the same store each time.

Expected (docs/architecture.md, invariants "nothing lost" and "no double send"): no job
lost (each reaches exactly one final status), no job sent twice, every receipt and MO the
SMSC delivered is published. Jobs whose submit_sm may have left when the process died end
``failed`` / ``unknown_outcome`` (``resend_on_timeout`` is off): they are counted, split
into "the SMSC had it" and "it never left" (armed for sending, then killed).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from reliability.conftest import size
from reliability.stack import GatewayProc, Observer, SimProc, assert_settled, carrier_entry, job
from support.broker import Mosquitto


async def test_kill9_at_random_moments_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, mosquitto: Mosquitto, report
) -> None:
    kills = size(4, 60)
    n_jobs = size(800, 12_000)
    rate = 100.0  # jobs published per second, across the kills and restarts
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    sim = SimProc(tmp_path / "sim", receipt_delay=0.4).start()
    gw = GatewayProc(tmp_path / "gw", mosquitto, [carrier_entry(sim, tps=150)])
    ids = [f"k-{i:06d}" for i in range(n_jobs)]
    mo_texts: list[str] = []
    try:
        async with Observer(mosquitto) as obs:
            await gw.start()

            async def publish() -> None:
                started = time.monotonic()
                for start in range(0, n_jobs, 10):
                    await obs.publish_many(
                        job("k", i) for i in range(start, min(start + 10, n_jobs))
                    )
                    if start % 100 == 0:
                        text = f"mo {len(mo_texts):05d}"
                        mo_texts.append(text)
                        await sim.amo("84981234567", "8100", text)
                    delay = started + (start + 10) / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)

            publisher = asyncio.create_task(publish())
            kill_at: list[float] = []
            for _ in range(kills):
                await asyncio.sleep(rng.uniform(0.2, 2.5))
                kill_at.append(round(time.monotonic(), 2))
                gw.kill9()
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                await gw.start()
            await publisher
            await obs.wait_final(ids, timeout=size(60, 300))
            # Receipts of submits whose job was failed at recovery are published unmatched
            # after receipt_hold; the SMSC is quiet once the gateway has answered them all.
            await sim.wait_quiet(timeout=60)
            assert await gw.terminate() == 0
            await asyncio.sleep(0.5)
            submits = await sim.asubmits()
            stats = await sim.astats()
    finally:
        gw.close()
        sim.stop()
    ledger = assert_settled(
        ids,
        obs,
        submits,
        scenario="kill -9 of the gateway",
        report=report,
        store=gw.read_store(),
        mo_texts=mo_texts,
        seed=seed,
        kills=gw.kills,
        starts=gw.starts,
        sim_receipts_acknowledged=stats["receipts_acknowledged"],
        sim_receipts_failed=stats["receipts_failed"],
        peak_rss_mb=round(gw.peak_rss / 2**20, 1),
    )
    assert stats["receipts_failed"] == 0 and stats["mo_failed"] == 0
    # The unknown outcomes are bounded by what was armed when each kill came.
    assert ledger.failed_codes.get("unknown_outcome", 0) <= kills * 60
