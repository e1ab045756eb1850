"""Scenario 5: a big backlog while every carrier is down, then the carrier comes back.

The jobs live in SQLite, not in RAM (docs/architecture.md, invariant
"bounded memory"): the gateway's resident memory must not
grow with the backlog. When the SMSC comes back they drain in arrival order (one lane, one
session: the SMSC sees them in the order they were published).

CI: 20,000 jobs, all drained. Long run: 1,000,000 jobs queued; the drain is checked on the
first ``drain`` jobs (the rest stay queued; the store's queue depth says how many).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from reliability.conftest import size
from reliability.stack import (
    GatewayProc,
    Observer,
    SimProc,
    carrier_entry,
    job,
    job_of_text,
    reconcile,
)
from support.broker import Mosquitto, free_port


@pytest.mark.timeout(size(240, 3000))
async def test_backlog_with_carrier_down_stays_in_sqlite_and_drains_in_order(
    tmp_path: Path, mosquitto: Mosquitto, report
) -> None:
    n_jobs = size(20_000, 1_000_000)
    drain = size(n_jobs, 60_000)
    port = free_port()
    sim = SimProc(tmp_path / "sim", port=port, receipt_delay=0.0)
    gw = GatewayProc(
        tmp_path / "gw",
        mosquitto,
        [carrier_entry(sim, tps=3000, window=100, reconnect_max=0.5)],
    )
    ids = [f"q-{i:06d}" for i in range(n_jobs)]
    rss_samples: list[tuple[int, int]] = []
    try:
        async with Observer(mosquitto, keep=False, submitted_is_final=True) as obs:
            await gw.start()
            rss_idle = gw.rss()

            async def watch() -> None:
                while True:
                    received = int(gw.metric("smppgw_jobs_received_total"))
                    rss_samples.append((received, gw.rss()))
                    await asyncio.sleep(1.0)

            watcher = asyncio.create_task(watch())
            started = time.monotonic()
            await obs.publish_many((job("q", i, dlr=False) for i in range(n_jobs)), concurrency=500)
            published_in = time.monotonic() - started
            deadline = time.monotonic() + size(120, 1200)
            while gw.metric("smppgw_jobs_received_total") < n_jobs:
                assert time.monotonic() < deadline, "the backlog never reached the store"
                await asyncio.sleep(0.5)
            queued_in = time.monotonic() - started
            # The carrier holds about two seconds of sending in memory (claimed, not yet
            # sent); everything else waits in SQLite.
            in_sqlite = gw.metric("smppgw_queue_depth")
            rss_queued = gw.rss()
            peak_queued = gw.note_rss()
            db_bytes = gw.store_path.stat().st_size

            # The carrier comes back.
            sim.start()
            drain_started = time.monotonic()
            await obs.wait_final(ids[:drain], timeout=size(120, 900))
            drained_in = time.monotonic() - drain_started
            watcher.cancel()
            rss_drained = gw.rss()
            peak = gw.note_rss()
            assert await gw.terminate() == 0
            submits = await sim.asubmits()
    finally:
        gw.close()
        sim.stop()
    conn = sqlite3.connect(f"file:{gw.store_path}?mode=ro", uri=True)
    try:
        states = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    finally:
        conn.close()
    left = states.get(0, 0)
    order = [job_of_text(s.text) for s in submits]
    expected = ids[: len(order)]
    out_of_order = sum(1 for a, b in zip(order, expected, strict=True) if a != b)
    ledger = reconcile(ids[:drain], obs, submits)
    report(
        scenario="backlog while the carrier is down, then drain",
        jobs_queued=n_jobs,
        jobs_drained_checked=drain,
        publish_seconds=round(published_in, 1),
        seconds_until_all_in_store=round(queued_in, 1),
        store_mb=round(db_bytes / 2**20, 1),
        queued_in_sqlite=in_sqlite,
        rss_idle_mb=round(rss_idle / 2**20, 1),
        rss_with_backlog_mb=round(rss_queued / 2**20, 1),
        peak_rss_while_queueing_mb=round(peak_queued / 2**20, 1),
        rss_after_drain_mb=round(rss_drained / 2**20, 1),
        peak_rss_mb=round(peak / 2**20, 1),
        rss_by_jobs_received_mb=[
            (n, round(r / 2**20, 1)) for n, r in rss_samples[:: max(1, len(rss_samples) // 12)]
        ],
        drain_seconds=round(drained_in, 1),
        drain_per_second=round(drain / drained_in),
        submits_out_of_order=out_of_order,
        left_in_queue=left,
        **ledger.summary(),
    )
    ledger.assert_clean(allow_unknown=False)
    assert ledger.outcomes == {"submitted": drain}
    assert out_of_order == 0
    # After SIGTERM every job is either sent (final) or back in the queue, in order.
    assert left == n_jobs - len(submits)
    assert set(states) <= {0, 4}, states
    # Bounded: the backlog costs far less than it would in RAM (roughly 1 KB a job).
    assert peak < 200 * 2**20
