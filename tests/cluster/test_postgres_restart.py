"""PostgreSQL restarted under load, the gateway (``smppgw run``) on it: while the database
is down intake takes nothing (no PUBACK: the broker keeps the jobs), the gateway stays up,
nothing committed is lost, and everything resumes by itself once the server is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from reliability.stack import GatewayProc, Observer, SimProc, assert_settled, carrier_entry, job
from support.broker import Mosquitto
from support.servers import Postgres, find_postgres_bin

DOWN = 4.0


async def test_postgres_restart_pauses_intake_loses_nothing_and_resumes(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = Postgres().start()
    dsn = server.create_database("gw")
    n_before, n_during = 300, 200
    sim = SimProc(tmp_path / "sim", receipt_delay=0.5).start()
    gw = GatewayProc(
        tmp_path / "gw",
        mosquitto,
        [carrier_entry(sim, tps=200)],
        store={"backend": "postgres", "dsn": dsn, "lease": "15s"},
        cluster={"node_id": "gw-a"},
    )
    ids = [f"pr-{i:06d}" for i in range(n_before + n_during)]
    try:
        async with Observer(mosquitto) as obs:
            await gw.start()
            await obs.publish_many(job("pr", i) for i in range(n_before))
            await obs.wait_for(lambda: len(obs.statuses) > n_before // 3, 30, "first events")
            received_before = gw.metric("smppgw_jobs_received_total")
            await asyncio.to_thread(server.stop)
            started = time.monotonic()
            await obs.publish_many(job("pr", i) for i in range(n_before, n_before + n_during))
            await asyncio.sleep(max(0.0, DOWN - (time.monotonic() - started)))
            received_during = gw.metric("smppgw_jobs_received_total") - received_before
            events_during = sum(1 for j in ids[n_before:] if j in obs.statuses)
            alive_during = gw.alive
            await asyncio.to_thread(server.start)
            back = time.monotonic()
            await obs.wait_final(ids, timeout=90)
            recovery = time.monotonic() - back
            await sim.wait_quiet(timeout=60)
            assert await gw.terminate() == 0
            submits = await sim.asubmits()
        outbox = server.query("SELECT count(*) FROM outbox", "gw")
    finally:
        gw.close()
        sim.stop()
        server.close()
    print(
        f"postgres down {DOWN} s: {received_during:.0f} jobs taken meanwhile, "
        f"all final {recovery:.1f} s after it was back"
    )
    assert alive_during
    assert received_during == 0 and events_during == 0, "nothing taken while it was down"
    assert_settled(
        ids,
        obs,
        submits,
        scenario=f"postgres down {DOWN} s",
        report=None,
        outbox=int(outbox),
        allow_unknown=False,
        delivered=len(ids),
    )


async def test_postgres_down_longer_than_the_lease_stops_the_gateway_safely(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Down for longer than ``store.lease``: another gateway could own our claims by now,
    so the gateway holds its carriers at two thirds of the lease and exits 75 (for systemd
    to restart it) at a full lease; restarted, it finishes every job, none sent twice."""
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    lease = 3.0
    server = Postgres().start()
    dsn = server.create_database("gw")
    n = 300
    sim = SimProc(tmp_path / "sim", receipt_delay=0.3).start()
    gw = GatewayProc(
        tmp_path / "gw",
        mosquitto,
        [carrier_entry(sim, tps=40)],
        store={"backend": "postgres", "dsn": dsn, "lease": f"{lease}s"},
        cluster={"node_id": "gw-a"},
    )
    ids = [f"pl-{i:06d}" for i in range(n)]
    try:
        async with Observer(mosquitto) as obs:
            await gw.start()
            await obs.publish_many(job("pl", i) for i in range(n))
            await obs.wait_for(lambda: len(obs.statuses) > 40, 30, "first events")
            await asyncio.to_thread(server.stop)
            code = await gw.child.wait(lease * 3)
            log = gw.log_text()
            await asyncio.to_thread(server.start)
            await gw.start()
            await obs.wait_final(ids, timeout=60)
            await sim.wait_quiet(timeout=60)
            assert await gw.terminate() == 0
            submits = await sim.asubmits()
    finally:
        gw.close()
        sim.stop()
        server.close()
    assert code == 75
    assert '"lease_expiring_fenced"' in log and '"lease_lost"' in log
    # Nothing lost, nothing sent twice; unknown outcomes allowed.
    assert_settled(ids, obs, submits, scenario="postgres down past the lease", report=None)
