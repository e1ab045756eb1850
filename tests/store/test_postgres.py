"""What only the PostgreSQL store has: migrations under an advisory lock, several gateways
(nodes) on one database, leases and takeover, and a database that goes away. A real
PostgreSQL on loopback (tests/support/servers.py)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from smppgw.store import OutboxEvent, StoreError
from smppgw.store.pg import PostgresStore
from smppgw.store.pg.schema import SCHEMA_VERSION, STEPS
from store.test_store import CARRIER, job, status_events

from support.servers import Postgres, find_postgres_bin

#: Every migration step, in order (numbers may have gaps: steps merged from branches).
ALL_STEPS = [step for step, _ in STEPS]


def open_node(dsn: str, node: str, **kwargs: object) -> PostgresStore:
    return PostgresStore(dsn, node=node, **kwargs)  # type: ignore[arg-type]


async def versions(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r[0] for r in await conn.fetch("SELECT version FROM smppgw_schema ORDER BY 1")]
    finally:
        await conn.close()


# -- migrations ---------------------------------------------------------------------------
async def test_gateways_starting_at_once_migrate_once(postgres_dsn: str) -> None:
    """Five stores opened at the same moment: one applies the schema, the others wait on
    the advisory lock and find it current; every one works."""
    stores = [open_node(postgres_dsn, f"gw-{i}") for i in range(5)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert await versions(postgres_dsn) == ALL_STEPS
        results = await asyncio.gather(*(s.add_jobs([job("same")]) for s in stores))
        assert sorted(r[0] for r in results) == [False] * 4 + [True]  # one dedup key
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_migrate_alone_then_open_applies_nothing(postgres_dsn: str) -> None:
    store = open_node(postgres_dsn, "gw-a")
    assert await store.migrate() == ALL_STEPS
    assert await store.migrate() == []
    async with store:
        assert await store.add_jobs([job("a")]) == [True]


async def test_newer_schema_is_refused(postgres_dsn: str) -> None:
    await open_node(postgres_dsn, "gw-a").migrate()
    conn = await asyncpg.connect(postgres_dsn)
    await conn.execute("INSERT INTO smppgw_schema (version) VALUES ($1)", SCHEMA_VERSION + 1)
    await conn.close()
    with pytest.raises(StoreError, match="newer"):
        await open_node(postgres_dsn, "gw-a").open()


async def test_unreachable_database_is_a_store_error(postgres_server: Postgres) -> None:
    from support.broker import free_port

    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(StoreError, match="cannot connect"):
        await open_node(dsn, "gw-a").open()


# -- several gateways on one database -----------------------------------------------------
async def test_concurrent_claims_of_two_nodes_never_overlap(postgres_dsn: str) -> None:
    async with open_node(postgres_dsn, "gw-a") as a, open_node(postgres_dsn, "gw-b") as b:
        await a.add_jobs([job(f"j{i:04d}", lane=i % 3) for i in range(600)])
        claimed: list[list[str]] = [[], []]

        async def drain(store: PostgresStore, into: list[str]) -> None:
            for _ in range(200):  # bounded
                batch = await store.claim(CARRIER, 7, time.time())
                if not batch:
                    return
                into.extend(j.job_id for j in batch)

        await asyncio.gather(drain(a, claimed[0]), drain(b, claimed[1]))
        assert claimed[0] and claimed[1], "both nodes got work"
        assert not set(claimed[0]) & set(claimed[1])
        assert len(claimed[0]) + len(claimed[1]) == 600


async def test_release_unsent_and_recover_touch_only_this_nodes_claims(
    postgres_dsn: str,
) -> None:
    async with open_node(postgres_dsn, "gw-a") as a, open_node(postgres_dsn, "gw-b") as b:
        await a.add_jobs([job("a1"), job("b1"), job("a2"), job("b2")])
        assert [j.job_id for j in await a.claim(CARRIER, 1, time.time())] == ["a1"]
        assert [j.job_id for j in await b.claim(CARRIER, 1, time.time())] == ["b1"]
        assert await a.release_unsent() == 1
        report = await a.recover(lambda carrier: False, status_events)
        assert (report.requeued, report.resent, report.failed) == (0, 0, [])
        view = await a.job("b1")
        assert view is not None and view.state == "sending"  # b's, b is alive


async def test_a_receipt_for_another_nodes_job_matches(postgres_dsn: str) -> None:
    """SMSCs deliver receipts on any bind of the account: gateway b matches what a sent."""
    async with open_node(postgres_dsn, "gw-a") as a, open_node(postgres_dsn, "gw-b") as b:
        await a.add_jobs([job("m")])
        await a.claim(CARRIER, 1, time.time())
        await a.mark_submitted("m", CARRIER, ["p0", "p1"], ["P0", "P1"], False, [])
        assert await b.lookup(CARRIER, "p1") == ("m", 1, 2)
        results = await asyncio.gather(
            a.apply_receipt("m", 0, "DELIVRD", status_events),
            b.apply_receipt("m", 1, "DELIVRD", status_events),
        )
        assert sorted(results, key=str) == [None, "delivered"]  # exactly one final status
        outbox = await a.pending_events(10) + await b.pending_events(10)
        assert [e.topic for e in outbox] == ["sms/status/m"]


# -- leases and takeover ------------------------------------------------------------------
async def expire(dsn: str, node: str) -> None:
    conn = await asyncpg.connect(dsn)
    await conn.execute("UPDATE nodes SET lease_until = 0 WHERE node_id = $1", node)
    await conn.close()


async def test_a_dead_nodes_work_is_taken_over_after_its_lease(postgres_dsn: str) -> None:
    """gw-a claims jobs (one of them in flight) and writes events, then stops renewing.
    While its lease holds nothing moves; once it ran out gw-b requeues the claimed job at
    its place, ends the in-flight one unknown_outcome (not resent) and publishes gw-a's
    events, and the unknown-outcome event as well."""
    async with open_node(postgres_dsn, "gw-b", lease=15.0) as b:
        dead = open_node(postgres_dsn, "gw-a", lease=15.0)
        await dead.open()
        await dead.add_jobs([job("hi", lane=0), job("n1"), job("n2"), job("lo", lane=2)])
        assert [j.job_id for j in await dead.claim(CARRIER, 2, time.time())] == ["hi", "n1"]
        await dead.mark_in_flight(["n1"])
        await dead.add_events([OutboxEvent("sms/inbound/viettel", b"mo")])
        await dead.close()  # stops renewing (as kill -9 would)
        assert await b.live_nodes() == 2
        report = await b.take_over(lambda carrier: False, status_events)
        assert (report.requeued, report.failed) == (0, [])  # its lease still holds
        await expire(postgres_dsn, "gw-a")
        assert await b.live_nodes() == 1
        report = await b.take_over(lambda carrier: False, status_events)
        assert (report.requeued, report.resent, report.failed) == (1, 0, ["n1"])
        assert [j.job_id for j in await b.claim(CARRIER, 10, time.time())] == ["hi", "n2", "lo"]
        view = await b.job("n1")
        assert view is not None and (view.status, view.error_code) == (
            "failed",
            "unknown_outcome",
        )
        assert [e.topic for e in await b.pending_events(10)] == [
            "sms/inbound/viettel",
            "sms/status/n1",
        ]
        again = await b.take_over(lambda carrier: False, status_events)
        assert (again.requeued, again.failed) == (0, [])  # taken over once


async def test_resend_on_timeout_requeues_a_dead_nodes_in_flight_job(postgres_dsn: str) -> None:
    async with open_node(postgres_dsn, "gw-b") as b:
        async with open_node(postgres_dsn, "gw-a") as dead:
            await dead.add_jobs([job("x")])
            await dead.claim(CARRIER, 1, time.time())
            await dead.mark_in_flight(["x"])
        await expire(postgres_dsn, "gw-a")
        report = await b.take_over(lambda carrier: True, status_events)
        assert (report.requeued, report.resent, report.failed) == (0, 1, [])
        assert [j.job_id for j in await b.claim(CARRIER, 1, time.time())] == ["x"]


# -- the database going away --------------------------------------------------------------
async def test_a_killed_connection_is_replaced_without_failing_anything(
    postgres_dsn: str,
) -> None:
    """An idle connection the server dropped (pg_terminate_backend, a failover) is noticed
    and replaced before the next batch: nothing fails."""
    async with open_node(postgres_dsn, "gw-a") as store:
        await store.add_jobs([job("before")])
        admin = await asyncpg.connect(postgres_dsn)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'smppgw gw-a'"
            )
        finally:
            await admin.close()
        await asyncio.sleep(0.2)
        assert await store.add_jobs([job("after")]) == [True]


async def test_postgres_down_fails_batches_then_recovers_by_itself() -> None:
    """While the server is down every operation fails with StoreError (so intake does not
    PUBACK); once it is back the same store works again without a restart."""
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = Postgres().start()
    try:
        dsn = server.create_database("gw")
        async with open_node(dsn, "gw-a") as store:
            await store.add_jobs([job("before")])
            server.stop()
            with pytest.raises(StoreError):
                await store.add_jobs([job("during")])
            assert store.stats().failed_batches >= 1
            server.start()
            assert await store.add_jobs([job("during"), job("after")]) == [True, True]
            assert await store.queue_depths() == {(CARRIER, 1): 3}
    finally:
        server.close()


async def test_text_is_blanked_once_submitted_unless_kept(postgres_dsn: str) -> None:
    async with open_node(postgres_dsn, "gw-a") as store:
        await store.add_jobs([job("otp", text="123456")])
        await store.mark_submitted("otp", CARRIER, ["1"], ["1"], False, [])
        texts = await store.run(lambda c: c.fetchval("SELECT text FROM jobs"))
        assert texts is None
    async with open_node(postgres_dsn, "gw-k", keep_text=True) as store:
        await store.add_jobs([job("kept", text="hello")])
        await store.finish("kept", "failed", [])
        kept = await store.run(lambda c: c.fetchval("SELECT text FROM jobs WHERE job_id='kept'"))
        assert kept == "hello"


async def test_a_stalled_node_cannot_arm_a_job_taken_over_from_it(postgres_dsn: str) -> None:
    """gw-a stalls past its lease with a claimed job in memory; gw-b takes it over and
    claims it; when gw-a wakes up its arming (mark_in_flight) is refused, so its carrier
    never writes the submit_sm: the job leaves once, from gw-b."""
    async with open_node(postgres_dsn, "gw-a") as a, open_node(postgres_dsn, "gw-b") as b:
        await a.add_jobs([job("x"), job("y")])
        assert [j.job_id for j in await a.claim(CARRIER, 2, time.time())] == ["x", "y"]
        await expire(postgres_dsn, "gw-a")
        await b.take_over(lambda carrier: False, status_events)
        assert [j.job_id for j in await b.claim(CARRIER, 1, time.time())] == ["x"]
        with pytest.raises(StoreError, match="no longer this gateway's"):
            await a.mark_in_flight(["x"])
        with pytest.raises(StoreError):
            await a.mark_in_flight(["y"])  # requeued, not ours either
        await b.mark_in_flight(["x"])
        view = await b.job("x")
        assert view is not None and view.state == "in_flight"


# -- merged per-job calls ------------------------------------------------------------------
async def test_concurrent_per_job_calls_are_merged_into_one_statement(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 concurrent mark_submitted / lookup / apply_receipt calls (as 200 submit_sm_resp
    and deliver_sm handlers make them) run as a few merged statements, with the results
    each caller would have had alone."""
    calls: dict[str, list[int]] = {}
    async with open_node(postgres_dsn, "gw-a") as store:
        merged = store._writer._merged
        for kind, fn in list(merged.items()):

            async def counted(tx: object, items: list[object], kind: str = kind, fn=fn) -> object:
                calls.setdefault(kind, []).append(len(items))
                return await fn(tx, items)  # type: ignore[arg-type]

            monkeypatch.setitem(merged, kind, counted)
        ids = [f"m{i:03d}" for i in range(200)]
        await store.add_jobs([job(i) for i in ids])
        await store.claim(CARRIER, 200, time.time())
        await asyncio.gather(*(store.mark_in_flight([i]) for i in ids))
        events = [[OutboxEvent(f"sms/status/{i}", b"s")] for i in ids]
        await asyncio.gather(
            *(
                store.mark_submitted(
                    i, CARRIER, [f"n{i}a", f"n{i}b"], [f"R{i}a", f"R{i}b"], False, e
                )
                for i, e in zip(ids, events, strict=True)
            )
        )
        # The merged statement numbers the events in call order (read back: the store
        # never changes the events it is given).
        pending = await store.pending_events(1000)
        assert [e.topic for e in pending] == [f"sms/status/{i}" for i in ids]
        hits = await asyncio.gather(*(store.lookup(CARRIER, f"n{i}b") for i in ids))
        assert hits == [(i, 1, 2) for i in ids]
        assert await store.lookup(CARRIER, "nothing") is None
        # both parts of every job in one batch: each job ends delivered exactly once
        results = await asyncio.gather(
            *(
                store.apply_receipt(i, part, "DELIVRD", status_events)
                for i in ids
                for part in (0, 1)
            )
        )
        assert results.count("delivered") == 200 and results.count(None) == 200
        view = await store.job("m123")
        assert view is not None and view.part_states == ["DELIVRD", "DELIVRD"]
        assert (view.state, view.status) == ("final", "delivered")
        assert await store.outbox_size() == 400  # submitted + delivered, per job
    for kind in ("mark_in_flight", "mark_submitted", "lookup", "apply_receipt"):
        assert max(calls.get(kind, [0])) >= 50, (kind, calls.get(kind))


async def test_a_bad_call_in_a_merged_group_fails_alone(postgres_dsn: str) -> None:
    async with open_node(postgres_dsn, "gw-a") as store:
        await store.add_jobs([job("ok1"), job("ok2"), job("done")])
        await store.finish("done", "failed", [])
        results = await asyncio.gather(
            store.mark_submitted("ok1", CARRIER, ["1"], ["1"], False, [OutboxEvent("t", b"")]),
            store.mark_submitted("ghost", CARRIER, ["2"], ["2"], False, []),
            store.mark_submitted("done", CARRIER, ["3"], ["3"], False, []),
            store.mark_submitted("ok2", CARRIER, ["4"], ["4"], False, []),
            return_exceptions=True,
        )
        assert results[0] is None and results[3] is None
        assert isinstance(results[1], KeyError) and isinstance(results[2], ValueError)
        assert await store.lookup(CARRIER, "4") == ("ok2", 0, 1)
        assert await store.lookup(CARRIER, "3") is None
        assert await store.outbox_size() == 1


# -- max_binds ----------------------------------------------------------------------------
async def test_bind_slots_are_capped_across_nodes_and_freed_with_a_lease(
    postgres_dsn: str,
) -> None:
    a, b, c = (open_node(postgres_dsn, f"gw-{x}") for x in "abc")
    await asyncio.gather(a.open(), b.open(), c.open())
    try:
        taken = await asyncio.gather(
            a.acquire_bind(CARRIER, 2), b.acquire_bind(CARRIER, 2), c.acquire_bind(CARRIER, 2)
        )
        assert sorted(taken, key=str) == [0, 1, None]  # two slots, three racing nodes
        waiting = [store for store, slot in zip((a, b, c), taken, strict=True) if slot is None]
        holders = [(s, slot) for s, slot in zip((a, b, c), taken, strict=True) if slot is not None]
        (waiter,) = waiting
        assert await waiter.acquire_bind("other", 2) == 0  # per carrier
        (first, first_slot), (second, _) = holders
        await first.release_bind(CARRIER, first_slot)
        assert await waiter.acquire_bind(CARRIER, 2) == first_slot
        assert await first.acquire_bind(CARRIER, 2) is None
        await expire(postgres_dsn, second.node)  # killed: its slot comes back with its lease
        assert await first.acquire_bind(CARRIER, 2) is not None
    finally:
        await asyncio.gather(a.close(), b.close(), c.close())


async def test_a_restarted_node_does_not_keep_its_old_bind_slots(postgres_dsn: str) -> None:
    async with open_node(postgres_dsn, "gw-a") as a:
        assert await a.acquire_bind(CARRIER, 1) == 0  # then "kill -9": never released
    async with open_node(postgres_dsn, "gw-a") as again:
        await again.recover(lambda carrier: False, status_events)  # at start
        assert await again.acquire_bind(CARRIER, 1) == 0


async def test_a_version_1_database_is_upgraded_to_the_current_schema(postgres_dsn: str) -> None:
    from smppgw.store.pg.schema import STEPS

    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(
            "CREATE TABLE smppgw_schema (version integer NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for statement in STEPS[0][1]:
            await conn.execute(statement)
        await conn.execute("INSERT INTO smppgw_schema (version) VALUES (1)")
        await conn.execute(
            "INSERT INTO jobs (job_id, carrier, state, received_at) VALUES ('old', $1, 0, 1)",
            CARRIER,
        )
    finally:
        await conn.close()
    async with open_node(postgres_dsn, "gw-a") as store:
        assert await store.add_jobs([job("old")]) == [False]  # the dedup key survived
        assert await store.acquire_bind(CARRIER, 1) == 0  # the v2 table is there
        (old,) = await store.claim(CARRIER, 10, 2e9)  # v3: chain and attempts, empty
        assert (old.job_id, old.chain, old.attempts) == ("old", (), ())
        await store.learn_port("84981110000", "vinaphone", 60.0)  # v3: the ported table
        assert await store.count_ported() == 1
    assert await versions(postgres_dsn) == ALL_STEPS
    assert SCHEMA_VERSION >= 4
