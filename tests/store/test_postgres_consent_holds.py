"""Issue 14 across a cluster: two ``PostgresStore`` nodes on one real PostgreSQL database
(what two gateways see). A held job is released (and so sent) once; the marketing cap
holds across gateways; an MO finds the reply window another gateway opened; held counts
are the cluster's; ``smppgw consent`` changes the shared list and its events are
published by a live gateway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from smppgw.cli import main
from smppgw.config import ConsentConfig
from smppgw.pipeline.marketing import MarketingGate, Reject
from smppgw.store import OutboxEvent, StoredJob
from smppgw.store.pg import PostgresStore
from store.test_store import CARRIER, job

NUMBER = "84981234567"
#: Marketing open all day (only the cap of 3 a day and opt-outs decide).
ALWAYS = MarketingGate(replace(ConsentConfig(), marketing_hours="00:00-24:00"))


@pytest.fixture
async def two(postgres_dsn: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    async with (
        PostgresStore(postgres_dsn, node="gw-a") as a,
        PostgresStore(postgres_dsn, node="gw-b") as b,
    ):
        yield a, b


def held(job_id: str, until: float) -> StoredJob:
    return replace(job(job_id), held_until=until, hold_reason="send_at", send_at=until)


async def release_round(store: PostgresStore, now: float) -> list[str]:
    """What one gateway's ``Holds.release_due`` does with the store: take the due jobs,
    release them all; the ids it moved into their lanes."""
    moved: list[str] = []
    while True:
        due = await store.due_held(now, 7)
        if not due:
            return moved
        ids = [j.job_id for j in due]
        await asyncio.sleep(0)  # let the other gateway interleave
        assert len(await store.release_held(ids)) == len(ids)  # its own: nobody else's
        moved += ids


async def test_two_gateways_release_each_held_job_once(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    now = time.time()
    ids = [f"h{i:03d}" for i in range(60)]
    assert all(await a.add_jobs([held(i, now - 1) for i in ids]))
    moved_a, moved_b = await asyncio.gather(release_round(a, now), release_round(b, now))
    assert sorted(moved_a + moved_b) == ids  # every job once, none twice
    assert moved_a and moved_b  # both timers worked, on different jobs
    # Each job is in its lane once: claimed once across both gateways.
    claimed_a, claimed_b = await asyncio.gather(
        a.claim(CARRIER, 100, now), b.claim(CARRIER, 100, now)
    )
    assert sorted(j.job_id for j in claimed_a + claimed_b) == ids


async def test_a_release_racing_another_gateways_release_moves_the_job_once(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    """Even when both gateways decided the same job (its claim by ``due_held`` ran out
    while one was stalled), the conditional UPDATE lets one of them move it."""
    a, b = two
    now = time.time()
    await a.add_jobs([held(f"r{i}", now - 1) for i in range(20)])
    ids = [f"r{i}" for i in range(20)]
    moved_a, moved_b = await asyncio.gather(a.release_held(ids), b.release_held(ids))
    assert len(moved_a) + len(moved_b) == 20
    assert await b.due_held(now + 3600, 100) == []


async def test_due_jobs_taken_by_a_gateway_that_died_come_due_again_for_another(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    now = time.time()
    await a.add_jobs([held("orphan", now - 1)])
    (taken,) = await a.due_held(now, 10)  # then gw-a dies before releasing it
    assert taken.held_until == pytest.approx(now - 1)
    assert await b.due_held(now, 10) == []  # not twice at once
    (again,) = await b.due_held(now + 61, 10)  # HOLD_CLAIM later: a survivor's
    assert again.job_id == "orphan"
    assert await b.release_held(["orphan"]) == [(CARRIER, 1)]


async def test_held_counts_are_the_clusters(two: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = two
    await a.add_jobs([held("c1", time.time() + 60), held("c2", time.time() + 60)])
    assert await b.refresh_held() == {"send_at": 2}
    assert b.held_counts() == {"send_at": 2}


async def test_the_marketing_cap_holds_across_two_gateways(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    """Rounds of simultaneous intakes on both gateways to one number: the rolling 24 h
    cap (3) is never exceeded, whoever takes the jobs."""
    a, b = two

    async def intake(store: PostgresStore, prefix: str) -> list[object]:
        results: list[object] = []
        for i in range(4):
            mj = StoredJob(f"{prefix}{i}", CARRIER, 1, NUMBER, "[QC] sale", category="marketing")
            results += await store.add_admitted([mj], [None], ALWAYS)
        return results

    got_a, got_b = await asyncio.gather(intake(a, "a"), intake(b, "b"))
    results = got_a + got_b
    assert results.count(True) == 3
    refused = [r for r in results if isinstance(r, Reject)]
    assert len(refused) == 5 and {r.code for r in refused} == {"frequency_cap"}
    sends = await a.run(lambda c: c.fetchval("SELECT count(*) FROM marketing_sends"))
    assert sends == 3


async def test_an_mo_finds_the_window_another_gateway_opened(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = two
    ask = replace(job("ask"), destination=NUMBER, expect_reply=600)
    await a.add_jobs([ask])
    await a.claim(CARRIER, 10, time.time())
    await a.mark_submitted("ask", CARRIER, ["m1"], ["m1"], False, [])
    window = await b.add_mo(NUMBER, time.time(), lambda w: [OutboxEvent("sms/inbound/v", b"")])
    assert window is not None and window.job_id == "ask"
    assert len(await b.pending_events(10)) == 1  # gw-b publishes what it received


async def test_an_opt_out_on_one_gateway_refuses_marketing_on_the_other(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    from smppgw.store import ConsentChange

    a, b = two
    change = ConsentChange(NUMBER, "opt_out", "STOP", "mo", CARRIER)
    assert await a.record_mo(NUMBER, time.time(), lambda w: [], change) == (None, True)
    mj = StoredJob("m", CARRIER, 1, NUMBER, "[QC] sale", category="marketing")
    (refused,) = await b.add_admitted([mj], [None], ALWAYS)
    assert isinstance(refused, Reject) and refused.code == "opted_out"
    assert await b.consent_counts() == {("opt_out", "mo"): 1}


def test_consent_command_on_a_postgres_store(
    tmp_path: Path, postgres_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "gw.yaml"
    file.write_text(
        "store: {backend: postgres, dsn_env: SMPPGW_TEST_DSN}\n"
        "cluster: {node_id: gw-a}\n"
        "routing: {country_code: '84'}\n"
        "carriers: [{name: v, host: 127.0.0.1, port: 2775, system_id: s, password: p}]\n"
    )
    csv_file = tmp_path / "dnc.csv"
    rows = ["phone"] + [f"09{n:08d}" for n in range(25_000)] + ["0981234567", "nonsense"]
    csv_file.write_text("\n".join(rows) + "\n")

    def consent(*args: str) -> str:
        assert main(["consent", "--config", str(file), *args]) == 0
        return capsys.readouterr().out

    async def live_gateway_events() -> tuple[int, list[str], dict[tuple[str, str], int]]:
        # The config's gateway (gw-a) starts: it publishes what the command queued.
        async with PostgresStore(postgres_dsn, node="gw-a") as store:
            pending = 0
            while batch := await store.pending_events(5000):
                pending += len(batch)
                await store.ack_events([e.event_id for e in batch if e.event_id])
            records = await store.consent_records(limit=3)
            return pending, [r.number for r in records], await store.consent_counts()

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SMPPGW_TEST_DSN", postgres_dsn)
        assert main(["consent", "--config", str(file), "list"]) == 2  # no schema yet
        assert "run `smppgw migrate`" in capsys.readouterr().err
        assert main(["migrate", "--config", str(file)]) == 0
        capsys.readouterr()
        assert consent("add", "0981234567") == "84981234567: opted out\n"
        assert consent("add", "0981234567") == "84981234567: already opted out\n"
        started = time.perf_counter()
        out = consent("import", str(csv_file))
        took = time.perf_counter() - started
        with capsys.disabled():
            print(f"\nimport of 25,002 lines on PostgreSQL: {took:.2f} s; {out.splitlines()[0]}")
        assert out.startswith("added 25000, already opted out 1, invalid lines: 1")
        assert consent("remove", "+84981234567") == "84981234567: removed from the list\n"
        assert consent("remove", "84981234567") == "84981234567: not on the list\n"
        listed = consent("list", "--limit", "2").splitlines()
        assert len(listed) == 2 and all("opted out" in line for line in listed)
        exported = consent("export").splitlines()
        assert exported[0] == "number,status,keyword,source,carrier,changed_at"
        assert len(exported) == 1 + 25_000
        assert postgres_dsn not in out
    pending, newest, counts = asyncio.run(live_gateway_events())
    # No gateway was live: the events wait in the config's node's outbox (gw-a).
    assert pending == 1 + 25_000 + 1
    assert len(newest) == 3
    assert counts == {("opt_out", "admin"): 25_001, ("opt_in", "admin"): 1}


async def test_consent_command_events_go_to_a_live_gateway(
    tmp_path: Path, postgres_dsn: str, two: tuple[PostgresStore, PostgresStore]
) -> None:
    """With gateways running, the command's events go to the outbox of the live one with
    the longest lease, whatever node its config names."""
    a, b = two
    await b.renew_lease()  # gw-b's lease now runs longest
    file = tmp_path / "gw.yaml"
    file.write_text(
        f"store: {{backend: postgres, dsn: '{postgres_dsn}'}}\n"
        "cluster: {node_id: gw-elsewhere}\n"
        "carriers: [{name: v, host: 127.0.0.1, port: 2775, system_id: s, password: p}]\n"
    )
    command = ["consent", "--config", str(file), "add", "0981234567"]
    assert await asyncio.to_thread(main, command) == 0
    assert await a.pending_events(10) == []
    (event,) = await b.pending_events(10)
    assert event.topic == "sms/consent" and b'"source":"admin"' in event.payload
    mj = StoredJob("m", CARRIER, 1, NUMBER, "[QC] sale", category="marketing")
    (refused,) = await a.add_admitted([mj], [None], ALWAYS)
    assert isinstance(refused, Reject)


async def test_a_step_merged_below_the_highest_applied_is_still_applied(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps come from branches developed side by side (3 for issue 15, 4 for issue 14):
    a database that got 4 first still gets 3 when it arrives."""
    import asyncpg

    from smppgw.store.pg import schema

    every = list(schema.STEPS)
    monkeypatch.setattr(schema, "STEPS", [(n, body) for n, body in every if n != 3])
    async with PostgresStore(postgres_dsn, node="gw-a") as store:
        assert await store.migrate() == []  # 1, 2 and 4 applied at open
    conn = await asyncpg.connect(postgres_dsn)
    try:
        versions = [r[0] for r in await conn.fetch("SELECT version FROM smppgw_schema")]
        assert 3 not in versions and 4 in versions
    finally:
        await conn.close()
    monkeypatch.setattr(schema, "STEPS", every)
    async with PostgresStore(postgres_dsn, node="gw-a") as store:
        assert await store.migrate() == []  # step 3 applied at open
        await store.add_jobs([held("kept", time.time() + 60)])  # step 3's and 4's columns
        assert await store.next_held() is not None
        assert await store.count_ported() == 0  # step 3's table
    conn = await asyncpg.connect(postgres_dsn)
    try:
        versions = [r[0] for r in await conn.fetch("SELECT version FROM smppgw_schema")]
        assert sorted(versions) == [n for n, _ in every]
    finally:
        await conn.close()
