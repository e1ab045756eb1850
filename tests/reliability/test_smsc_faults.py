"""Scenario 3: the SMSC misbehaves (``smppgw sim`` faults, set at run time over POST /config).

Each test runs broker, simulator and gateway as separate processes and ends with the same
reconciliation: every job has exactly one final status, no job reached the SMSC twice,
every receipt and MO the SMSC delivered was published.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reliability.conftest import size
from reliability.stack import job, running
from support.broker import Mosquitto


async def test_connection_dropped_mid_window(tmp_path: Path, mosquitto: Mosquitto, report) -> None:
    """The SMSC closes the connection right after answering a submit, with more in the
    window: those have no response, so they are unknown outcomes, reported and not re-sent;
    the session rebinds and the rest is delivered."""
    n_jobs = size(400, 4000)
    drops_for = size(2.0, 20.0)
    async with running(
        tmp_path, mosquitto, carrier={"tps": 200, "window": 20}, sim={"receipt_delay": 0.2}
    ) as run:
        ids = [f"d-{i:06d}" for i in range(n_jobs)]
        publisher = asyncio.create_task(run.obs.publish_many(job("d", i) for i in range(n_jobs)))
        await run.obs.wait_for(lambda: len(run.obs.statuses) > 20, 20, "first events")
        # Responses a little late, so the window is full when the link goes.
        await run.sim.afaults(drop_after_submits=30, response_delay=0.05)
        await asyncio.sleep(drops_for)
        await run.sim.afaults(drop_after_submits=None, response_delay=0.0)
        await publisher
        ledger = await run.finish(ids, timeout=size(60, 180))
    drops = run.stats["drops"]
    report(
        scenario="SMSC drops the connection mid-window",
        connection_drops=drops,
        binds=run.stats["binds_total"],
        **ledger.summary(),
    )
    assert drops >= 2
    ledger.assert_clean()
    # What was in the window when the link went is unknown, never re-sent; the rest arrives.
    assert ledger.failed_codes.get("unknown_outcome", 0) >= 1
    assert set(ledger.failed_codes) <= {"unknown_outcome"}
    # Accepted, but the response was lost with the link: the SMSC's receipt is published
    # as unmatched (the job was already reported as an unknown outcome).
    assert ledger.receipts_unmatched == ledger.unknown_sent
    assert ledger.outcomes["delivered"] == ledger.submits - ledger.unknown_sent


async def test_smsc_stops_answering_submits(tmp_path: Path, mosquitto: Mosquitto, report) -> None:
    """No submit_sm_resp at all for a while: each of those jobs is reported failed /
    unknown_outcome after response_timeout (the SMSC may have it), and none is re-sent."""
    n_jobs = size(300, 3000)
    silent_for = size(1.5, 15.0)
    async with running(
        tmp_path,
        mosquitto,
        carrier={"tps": 100, "window": 10, "response_timeout": 1.0},
        sim={"receipt_delay": 0.2},
    ) as run:
        ids = [f"n-{i:06d}" for i in range(n_jobs)]
        publisher = asyncio.create_task(run.obs.publish_many(job("n", i) for i in range(n_jobs)))
        await run.obs.wait_for(lambda: len(run.obs.statuses) > 20, 20, "first events")
        await run.sim.afaults(no_response_fraction=1.0)
        await asyncio.sleep(silent_for)
        await run.sim.afaults(no_response_fraction=0.0)
        await publisher
        ledger = await run.finish(ids, timeout=size(60, 180))
    report(
        scenario="SMSC stops answering submit_sm",
        seconds_silent=silent_for,
        **ledger.summary(),
    )
    ledger.assert_clean()
    unknown = ledger.failed_codes.get("unknown_outcome", 0)
    assert ledger.unanswered_submits >= 1
    # Exactly the unanswered submits are unknown outcomes: reported, not re-sent.
    assert unknown == ledger.unanswered_submits == ledger.unknown_sent
    assert ledger.outcomes["delivered"] == n_jobs - unknown


async def test_smsc_answers_slowly(tmp_path: Path, mosquitto: Mosquitto, report) -> None:
    """Responses delayed (but inside response_timeout): the window fills, throughput drops
    to window / delay, and everything is delivered with no unknown outcome."""
    n_jobs = size(200, 2000)
    delay = 0.8
    async with running(
        tmp_path,
        mosquitto,
        carrier={"tps": 200, "window": 20, "response_timeout": 3.0},
        sim={"receipt_delay": 0.2, "faults": {"response_delay": delay}},
    ) as run:
        ids = [f"s-{i:06d}" for i in range(n_jobs)]
        started = time.monotonic()
        await run.obs.publish_many(job("s", i) for i in range(n_jobs))
        await run.obs.wait_final(ids, timeout=size(60, 300))
        elapsed = time.monotonic() - started
        ledger = await run.finish(ids)
    report(
        scenario="SMSC answers slowly",
        response_delay=delay,
        seconds=round(elapsed, 1),
        submits_per_second=round(n_jobs / elapsed, 1),
        **ledger.summary(),
    )
    ledger.assert_clean(allow_unknown=False)
    assert ledger.outcomes == {"delivered": n_jobs}
    # 20 in the window per 0.8 s: at most ~25/s; the window, not the TPS, is the limit.
    assert n_jobs / elapsed < 20 / delay * 1.2


async def test_smsc_throttles_hard(tmp_path: Path, mosquitto: Mosquitto, report) -> None:
    """The account's real limit is far below the configured TPS: ESME_RTHROTTLED, back-off,
    probe, and everything is still delivered, nothing lost, nothing sent twice."""
    n_jobs = size(200, 2000)
    async with running(
        tmp_path,
        mosquitto,
        carrier={"tps": 200, "window": 20, "throttle_backoff": 0.2, "throttle_backoff_max": 1.0},
        sim={"receipt_delay": 0.2, "tps": 40},
    ) as run:
        ids = [f"t-{i:06d}" for i in range(n_jobs)]
        started = time.monotonic()
        await run.obs.publish_many(job("t", i) for i in range(n_jobs))
        await run.obs.wait_final(ids, timeout=size(60, 300))
        elapsed = time.monotonic() - started
        ledger = await run.finish(ids)
    throttled = run.stats["submits_throttled"]
    report(
        scenario="SMSC throttles hard (account 40/s, carrier configured 200/s)",
        submits_throttled=throttled,
        seconds=round(elapsed, 1),
        delivered_per_second=round(n_jobs / elapsed, 1),
        **ledger.summary(),
    )
    assert throttled > 0
    ledger.assert_clean(allow_unknown=False)
    assert ledger.outcomes == {"delivered": n_jobs}


async def test_smsc_refuses_binds_for_a_while(tmp_path: Path, mosquitto: Mosquitto, report) -> None:
    """The gateway restarts while the SMSC refuses binds (ESME_RBINDFAIL): it backs off
    (no bind storm), keeps the jobs, and delivers them once binds are accepted again."""
    refuse = size(5.0, 60.0)
    n_jobs = size(100, 500)
    async with running(
        tmp_path,
        mosquitto,
        carrier={"tps": 200, "reconnect_min": 0.2, "reconnect_max": 2.0},
        sim={"receipt_delay": 0.2},
    ) as run:
        ids = [f"r-{i:06d}" for i in range(n_jobs)]
        await run.obs.publish_many(job("r", i) for i in range(n_jobs // 2))
        assert await run.gw.terminate() == 0
        await run.sim.afaults(refuse_binds_for=refuse)
        refused_from = time.monotonic()
        await run.gw.start()
        await run.obs.publish_many(job("r", i) for i in range(n_jobs // 2, n_jobs))
        await run.obs.wait_final(ids, timeout=refuse + size(60, 120))
        waited = time.monotonic() - refused_from
        ledger = await run.finish(ids)
    refusals = run.stats["binds_refused"]
    report(
        scenario="SMSC refuses binds",
        seconds_refused=refuse,
        bind_refusals=refusals,
        seconds_to_all_final=round(waited, 1),
        **ledger.summary(),
    )
    ledger.assert_clean(allow_unknown=False)
    assert ledger.outcomes == {"delivered": n_jobs}
    assert refusals >= 2
    # Exponential back-off from 0.2 s capped at 2 s: at most ~1 attempt per 0.2 s.
    assert refusals <= refuse / 0.2 + 2
    assert waited >= refuse - 0.5


async def test_burst_of_receipts_and_mo(tmp_path: Path, mosquitto: Mosquitto, report) -> None:
    """Receipts for every job fall due together while 2,000 MO are injected as fast as the
    control port takes them: every one is published; deliver_sm are answered only after
    their events are durable."""
    n_jobs = size(1000, 10_000)
    n_mo = size(2000, 20_000)
    async with running(
        tmp_path,
        mosquitto,
        carrier={"tps": 1000, "window": 50},
        sim={"receipt_delay": 2.0},
        keep_events=True,
    ) as run:
        ids = [f"m-{i:06d}" for i in range(n_jobs)]
        await run.obs.publish_many(job("m", i) for i in range(n_jobs))
        await run.obs.wait_for(lambda: len(run.obs.statuses) >= n_jobs, 60, "submitted events")
        mo_texts = [f"mo burst {i:06d}" for i in range(n_mo)]
        started = time.monotonic()

        def inject(chunk: list[str]) -> None:
            for text in chunk:
                run.sim.mo("84981234567", "8100", text)

        with ThreadPoolExecutor(8) as pool:
            chunks = [mo_texts[i::8] for i in range(8)]
            await asyncio.gather(
                *(asyncio.get_running_loop().run_in_executor(pool, inject, c) for c in chunks)
            )
        injected_in = time.monotonic() - started
        await run.obs.wait_for(lambda: len(run.obs.inbound) >= n_mo, size(60, 300), "MO")
        mo_in = time.monotonic() - started
        ledger = await run.finish(ids, mo_texts=mo_texts, timeout=size(60, 300))
    report(
        scenario="burst of receipts and MO",
        mo_injected_per_second=round(n_mo / injected_in),
        seconds_to_publish_all_mo=round(mo_in, 1),
        **ledger.summary(),
    )
    ledger.assert_clean(allow_unknown=False)
    assert ledger.outcomes == {"delivered": n_jobs}
    assert ledger.receipts_expected == n_jobs and not ledger.receipts_lost
    assert run.stats["mo_acknowledged"] >= n_mo and run.stats["mo_failed"] == 0
