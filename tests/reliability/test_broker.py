"""Scenario 2: the broker dies (``kill -9``) or is away for a while.

* Broker away (stopped, then back): receipts keep arriving from the SMSC meanwhile; their
  events wait in the store's outbox (``smppgw_mqtt_outbox_depth`` > 0) and are published
  once the broker is back. Nothing lost.
* Broker killed with SIGKILL and restarted while jobs, receipts and events flow. The
  gateway reconnects and loses nothing it was given. Mosquitto itself saves its state every
  ``autosave_interval`` (1 s here), so a SIGKILL can lose messages *it* had acknowledged
  since then (a job the client saw PUBACKed, an event the gateway saw PUBACKed): the store
  tells those apart, and the test counts them as the broker's, not the gateway's.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from reliability.conftest import size
from reliability.stack import (
    GatewayProc,
    Observer,
    SimProc,
    assert_settled,
    carrier_entry,
    job,
    reconcile,
)
from support.broker import Mosquitto


async def _publish_paced(obs: Observer, prefix: str, n: int, rate: float) -> None:
    started = time.monotonic()
    pending: set[asyncio.Task[int]] = set()
    for i in range(n):
        pending.add(asyncio.ensure_future(obs.publish_acked(job(prefix, i))))
        if len(pending) >= 100:
            done, pending = await asyncio.wait(pending, return_when="FIRST_COMPLETED")
            for task in done:
                task.result()
        delay = started + (i + 1) / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    for task in await asyncio.gather(*pending):
        assert task >= 1


async def test_broker_away_events_wait_in_the_outbox_and_are_all_published(
    tmp_path: Path, mosquitto: Mosquitto, report
) -> None:
    outages = size(2, 10)
    away = size(3.0, 10.0)
    n_jobs = size(300, 3000)
    sim = SimProc(tmp_path / "sim", receipt_delay=1.0).start()
    gw = GatewayProc(tmp_path / "gw", mosquitto, [carrier_entry(sim, tps=100)])
    ids = [f"a-{i:06d}" for i in range(n_jobs)]
    mo_texts: list[str] = []
    peak_outbox = 0.0
    try:
        async with Observer(mosquitto) as obs:
            await gw.start()
            per_round = n_jobs // outages
            for r in range(outages):
                chunk = range(r * per_round, n_jobs if r == outages - 1 else (r + 1) * per_round)
                for i in chunk:
                    await obs.publish_acked(job("a", i))
                # Let the gateway take them (PUBACKed = durable), then take the broker away
                # while they are being sent and their receipts come back.
                await obs.wait_for(
                    lambda c=chunk: all(f"a-{i:06d}" in obs.statuses for i in c[:20]),
                    timeout=20,
                    what="first submitted events",
                )
                mosquitto.stop()
                deadline = time.monotonic() + away
                while time.monotonic() < deadline:
                    text = f"mo-away {r} {len(mo_texts)}"
                    mo_texts.append(text)
                    await sim.amo("84981234567", "8100", text)
                    peak_outbox = max(peak_outbox, gw.metric("smppgw_mqtt_outbox_depth"))
                    await asyncio.sleep(0.25)
                assert gw.metric("smppgw_mqtt_connected") == 0
                mosquitto.start()
                await obs.client.wait_connected(15)
            await obs.wait_final(ids, timeout=size(60, 180))
            await sim.wait_quiet()
            assert await gw.terminate() == 0
            await asyncio.sleep(0.5)
            submits = await sim.asubmits()
    finally:
        gw.close()
        sim.stop()
    assert_settled(
        ids,
        obs,
        submits,
        scenario="broker away (stopped and restarted) with the outbox filling",
        report=report,
        store=gw.read_store(),
        mo_texts=mo_texts,
        allow_unknown=False,
        delivered=n_jobs,
        outages=outages,
        seconds_away=away,
        peak_outbox_depth=peak_outbox,
    )
    assert peak_outbox > 0, "receipts during the outage should have waited in the outbox"


async def test_broker_kill9_and_restart_while_everything_flows(
    tmp_path: Path, mosquitto: Mosquitto, report
) -> None:
    kills = size(2, 20)
    n_jobs = size(600, 6000)
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    sim = SimProc(tmp_path / "sim", receipt_delay=0.5).start()
    gw = GatewayProc(tmp_path / "gw", mosquitto, [carrier_entry(sim, tps=150)])
    ids = [f"b-{i:06d}" for i in range(n_jobs)]
    try:
        async with Observer(mosquitto) as obs:
            await gw.start()
            publisher = asyncio.create_task(_publish_paced(obs, "b", n_jobs, rate=100.0))
            for _ in range(kills):
                await asyncio.sleep(rng.uniform(0.5, 2.5))
                mosquitto.kill()
                await asyncio.sleep(rng.uniform(0.2, 2.0))
                mosquitto.start()
            await publisher
            # Jobs the broker lost after PUBACKing them never reach the gateway: wait for
            # the rest, then look in the store to tell which is which.
            with_store_timeout = size(60, 240)
            deadline = time.monotonic() + with_store_timeout
            while time.monotonic() < deadline and len(obs.finals) < n_jobs:
                before = len(obs.finals)
                await asyncio.sleep(3.0)
                if len(obs.finals) == before and (await sim.astats())["deliveries_queued"] == 0:
                    break
            await sim.wait_quiet()
            assert await gw.terminate() == 0
            await asyncio.sleep(0.5)
            submits = await sim.asubmits()
    finally:
        gw.close()
        sim.stop()
    store = gw.read_store()
    ledger = reconcile(ids, obs, submits, store=store)
    # Split what the observer is missing: never reached the gateway (lost by the broker
    # after PUBACKing the client) or final in the store and published, then lost by the
    # broker before it reached the subscriber.
    jobs_lost_by_broker = [j for j in ledger.lost if j not in store.jobs]
    events_lost_by_broker = [
        j for j in ledger.lost if j in store.jobs and store.jobs[j][0] == 4 and store.outbox == 0
    ]
    unexplained = set(ledger.lost) - set(jobs_lost_by_broker) - set(events_lost_by_broker)
    receipts_lost_by_broker = [
        r for r in ledger.receipts_lost if r.split(":")[0] in events_lost_by_broker
    ]
    report(
        scenario="broker kill -9 and restart",
        seed=seed,
        broker_kills=kills,
        jobs_lost_by_broker=len(jobs_lost_by_broker),
        events_lost_by_broker=len(events_lost_by_broker),
        lost_by_gateway=len(unexplained),
        outbox_left=store.outbox,
        **ledger.summary(),
    )
    assert not unexplained, sorted(unexplained)[:10]
    assert set(ledger.receipts_lost) == set(receipts_lost_by_broker)
    assert not ledger.conflicting and not ledger.duplicates_at_smsc
    assert store.outbox == 0
    # Every job the gateway was given reached a final status in the store.
    assert all(state == 4 for state, _, _ in store.jobs.values())
