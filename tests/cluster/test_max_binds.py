"""``carriers[].max_binds`` across three ``smppgw run`` processes on one account that
allows two binds: two gateways bind, the third waits instead of being refused, and it
binds once a bound gateway is killed and its lease runs out; jobs flow throughout."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg

from reliability.stack import (
    CARRIER_PASSWORD,
    SYSTEM_ID,
    GatewayProc,
    Observer,
    SimProc,
    carrier_entry,
    job,
    reconcile,
)
from support.broker import Mosquitto

LEASE = 3.0


async def _until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_a_third_gateway_waits_for_a_free_bind(
    tmp_path: Path, mosquitto: Mosquitto, postgres_dsn: str
) -> None:
    sim = SimProc(
        tmp_path / "sim",
        receipt_delay=0.2,
        accounts=[{"system_id": SYSTEM_ID, "password": CARRIER_PASSWORD, "max_binds": 2}],
    ).start()
    gateways = [
        GatewayProc(
            tmp_path / node,
            mosquitto,
            [carrier_entry(sim, tps=50, sessions=1, max_binds=2)],
            client_id=node,
            mqtt={"shared_group": "smppgw"},
            store={"backend": "postgres", "dsn": postgres_dsn, "lease": f"{LEASE}s"},
            cluster={"node_id": node},
        )
        for node in ("gw-a", "gw-b", "gw-c")
    ]
    ids = [f"mb-{i:06d}" for i in range(150)]
    try:
        async with Observer(mosquitto) as obs:
            for gw in gateways:  # one after the other: the first two take the binds
                await gw.start()

            async def two_bound() -> bool:
                return (await sim.astats())["binds"] == 2

            await _until(two_bound, 15, "two binds")
            await asyncio.sleep(2.0)  # the third keeps waiting, without binding
            stats = await sim.astats()
            waiting = [gw for gw in gateways if '"bind_slot_wait"' in gw.log_text()]
            assert stats["binds"] == 2 and len(waiting) == 1, stats
            await obs.publish_many(job("mb", i) for i in range(len(ids)))

            async def all_stored() -> bool:  # PUBACKed: in PostgreSQL, not only the broker
                conn = await asyncpg.connect(postgres_dsn)
                try:
                    return await conn.fetchval("SELECT count(*) FROM jobs") == len(ids)
                finally:
                    await conn.close()

            await _until(all_stored, 30, "every job stored")
            bound = next(gw for gw in gateways if gw not in waiting)
            bound.kill9()
            killed = time.monotonic()
            await _until(lambda: _logged(waiting[0], "bind_slot_taken"), LEASE * 3, "a bind")
            took = time.monotonic() - killed
            await obs.wait_final(ids, timeout=60)
            await sim.wait_quiet(timeout=30)
            submits = await sim.asubmits()
            after = await sim.astats()
            for gw in gateways:
                if gw.alive:
                    assert await gw.terminate() == 0
    finally:
        for gw in gateways:
            gw.close()
        sim.stop()
    print(f"max_binds: the waiting gateway bound {took:.1f} s after the kill (lease {LEASE} s)")
    assert took <= LEASE + 2.0
    assert after.get("binds_refused", 0) == 0, "no bind was refused by the SMSC"
    ledger = reconcile(ids, obs, submits)
    ledger.assert_clean()


async def _logged(gw: GatewayProc, event: str) -> bool:
    return f'"{event}"' in gw.log_text()
