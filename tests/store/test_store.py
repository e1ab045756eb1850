"""The store contract: every API method, group commit, dedup, crash safety, error recovery,
bounded memory, on both backends (``backend``: a real SQLite file under tmp_path, a real
PostgreSQL database; see conftest.py); a real subprocess killed with SIGKILL. Tests named
``..._sqlite`` are about SQLite itself (WAL, pragmas, its writer thread) and run only there;
their PostgreSQL counterparts are in test_postgres.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from smppgw.config import SourceConfig
from smppgw.engine.message import Priority
from smppgw.procs import gone
from smppgw.store import (
    JobState,
    JobView,
    OutboxEvent,
    Store,
    StoredJob,
    StoreError,
    Usage,
)
from smppgw.store import api as store_api
from smppgw.store import ops as store_ops
from smppgw.store.pg import api as pg_api
from smppgw.store.schema import (
    _CREATE,
    _CREATE_CONSENT,
    _CREATE_FAILOVER,
    _CREATE_SCHEDULE,
    _CREATE_V2,
    SCHEMA_VERSION,
)
from store.conftest import Backend

CARRIER = "viettel"


def job(job_id: str, lane: int = 1, carrier: str = CARRIER, **kw: object) -> StoredJob:
    kw.setdefault("text", f"text of {job_id}")
    return StoredJob(job_id, carrier, lane, "84912345678", **kw)  # type: ignore[arg-type]


def status_events(view: JobView, status: str) -> list[OutboxEvent]:
    """What the gateway would build: the status event, plus the Response Topic echo."""
    payload = json.dumps({"id": view.job_id, "status": status, "parts": view.parts}).encode()
    events = [OutboxEvent(f"sms/status/{view.job_id}", payload)]
    if view.response_topic:
        events.append(OutboxEvent(view.response_topic, payload, view.correlation_data))
    return events


def no_events(view: JobView, status: str) -> list[OutboxEvent]:
    return []


async def claim_ids(store: Store, limit: int = 100, carrier: str = CARRIER) -> list[str]:
    return [j.job_id for j in await store.claim(carrier, limit, time.time())]


async def topics(store: Store) -> list[str]:
    return [e.topic for e in await store.pending_events(1000)]


# -- schema ------------------------------------------------------------------------------
async def test_schema_is_created_versioned_and_reopened_sqlite(tmp_path: Path) -> None:
    path = str(tmp_path / "gw.db")
    async with Store(path) as store:
        assert await store.add_jobs([job("a")]) == [True]
        mode = await store.run(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        assert mode == "wal"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    async with Store(path) as store:  # reopening keeps the data and the dedup key
        assert await store.add_jobs([job("a")]) == [False]
        assert await store.queue_depths() == {(CARRIER, 1): 1}


async def test_version_1_database_is_upgraded_in_place_sqlite(tmp_path: Path) -> None:
    """A store written by the previous release keeps its jobs and gains the v2 tables."""
    from smppgw.store.schema import _CREATE

    path = str(tmp_path / "gw.db")
    conn = sqlite3.connect(path)
    for statement in _CREATE:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO jobs (job_id, carrier, state, received_at) VALUES ('old', ?, 0, 1.0)",
        (CARRIER,),
    )
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    async with Store(path) as store:
        assert await store.add_jobs([job("old")]) == [False]  # the dedup key survived
        tables = await store.run(
            lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master")}
        )
        assert {"dead_events", "tenant_usage", "consent", "marketing_sends"} <= tables
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_version_5_database_gets_the_queued_only_index(tmp_path: Path) -> None:
    """Version 6 keeps only queued jobs in ``jobs_queue`` (a partial index): an upgraded
    database counts and claims its queued jobs as before, through that index."""
    path = str(tmp_path / "gw.db")
    conn = sqlite3.connect(path)
    for statement in _CREATE + _CREATE_V2 + _CREATE_FAILOVER + _CREATE_SCHEDULE + _CREATE_CONSENT:
        conn.execute(statement)
    conn.executemany(
        "INSERT INTO jobs (job_id, carrier, lane, state, received_at) VALUES (?, ?, ?, ?, 1.0)",
        [("q0", CARRIER, 0, 0), ("q1", CARRIER, 1, 0), ("done", CARRIER, 0, 4)],
    )
    conn.execute("PRAGMA user_version=5")
    conn.commit()
    conn.close()
    async with Store(path) as store:
        assert await store.queue_depths() == {(CARRIER, 0): 1, (CARRIER, 1): 1}
        assert await claim_ids(store) == ["q0", "q1"]
        await _claim_plan(store)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs_queue'").fetchone()
        assert sql.endswith("WHERE state = 0")


async def test_newer_schema_is_refused_sqlite(tmp_path: Path) -> None:
    path = str(tmp_path / "gw.db")
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        await Store(path).open()


async def test_unopenable_path_raises_store_error_sqlite(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        await Store(str(tmp_path / "missing-dir" / "gw.db")).open()


async def test_closed_store_refuses_operations(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "gw.db"))
    with pytest.raises(StoreError, match="not open"):
        await store.add_jobs([job("a")])
    await store.open()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.add_jobs([job("a")])
    await store.close()  # idempotent


# -- add_jobs / dedup / group commit ------------------------------------------------------
async def test_add_jobs_dedups_in_every_state_until_purged(store: Store, backend: Backend) -> None:
    assert await store.add_jobs([job("a"), job("a"), job("b")]) == [True, False, True]
    assert await store.add_jobs([job("a", lane=0, text="other")]) == [False]
    view = await store.job("a")
    assert view is not None and view.lane == 1  # the duplicate changed nothing
    await store.claim(CARRIER, 10, time.time())
    assert await store.add_jobs([job("a")]) == [False]  # sending
    await store.mark_submitted("a", CARRIER, ["1"], ["1"], False, [])
    assert await store.add_jobs([job("a")]) == [False]  # submitted
    await store.finish("b", "failed", [])
    assert await store.add_jobs([job("b")]) == [False]  # final
    assert await backend.sql(store, "SELECT count(*) FROM jobs") == [(2,)]
    assert await store.purge(time.time() + 1) == 2
    assert await store.add_jobs([job("a"), job("b")]) == [True, True]


async def test_concurrent_single_job_callers_share_commits(store: Store) -> None:
    ids = [f"j{i}" for i in range(300)]
    results = await asyncio.gather(*(store.add_jobs([job(i)]) for i in ids))
    assert results == [[True]] * len(ids)
    stats = store.stats()
    assert stats.max_batch > 1
    assert stats.commits < len(ids)
    # Concurrent duplicates of one id: exactly one wins.
    dup = await asyncio.gather(*(store.add_jobs([job("same")]) for _ in range(50)))
    assert sorted(r[0] for r in dup) == [False] * 49 + [True]


async def test_stored_job_round_trips_every_field(store: Store) -> None:
    original = StoredJob(
        job_id="full",
        carrier=CARRIER,
        lane=int(Priority.HIGH),
        destination="84987654321",
        text="Mã OTP của bạn là 123456",
        source=SourceConfig("SHOPVN", 5, 0),
        dlr=False,
        expires_at=1234.5,
        response_topic="app/reply",
        correlation_data=b"\x00corr",
        attempt=2,
        received_at=1000.25,
        chain=(CARRIER, "vinaphone"),
        attempts=(("mobifone", "ESME_RINVDSTADR"),),
    )
    await store.add_jobs([original])
    (claimed,) = await store.claim(CARRIER, 10, time.time())
    assert claimed == original
    message = claimed.outbound()
    assert message.priority is Priority.HIGH and message.source == SourceConfig("SHOPVN", 5, 0)


# -- claim / release / retry_later / next_due ---------------------------------------------
async def test_claim_serves_lanes_in_order_then_arrival_and_marks_sending(store: Store) -> None:
    await store.add_jobs([job("low1", 2), job("n1", 1), job("high1", 0), job("n2", 1)])
    await store.add_jobs([job("high2", 0), job("other", 0, carrier="mobifone")])
    assert await claim_ids(store, 3) == ["high1", "high2", "n1"]
    view = await store.job("high1")
    assert view is not None and view.state == "sending"
    assert await claim_ids(store) == ["n2", "low1"]
    assert await claim_ids(store) == []
    assert await claim_ids(store, carrier="mobifone") == ["other"]


async def test_release_returns_jobs_to_their_place_in_arrival_order(store: Store) -> None:
    await store.add_jobs([job(f"n{i}") for i in range(5)])
    assert await claim_ids(store, 3) == ["n0", "n1", "n2"]
    await store.add_jobs([job("n5")])
    await store.mark_in_flight(["n0"])
    assert await store.release(["n2", "n0", "n1", "unknown"]) == 3
    assert await claim_ids(store) == ["n0", "n1", "n2", "n3", "n4", "n5"]
    await store.mark_submitted("n3", CARRIER, ["x"], ["x"], False, [])
    assert await store.release(["n3"]) == 0  # submitted jobs never go back


async def test_release_unsent_returns_a_stopped_carriers_claimed_jobs(store: Store) -> None:
    """What a carrier left without an outcome when it stopped (claimed, or armed and never
    accepted) goes back; another carrier's claims and submitted jobs stay where they are."""
    await store.add_jobs([job("a0"), job("a1"), job("a2"), job("b0", carrier="other")])
    assert await claim_ids(store) == ["a0", "a1", "a2"]
    assert await claim_ids(store, carrier="other") == ["b0"]
    await store.mark_in_flight(["a1"])
    await store.mark_submitted("a2", CARRIER, ["x"], ["x"], False, [])
    assert await store.release_unsent(CARRIER) == 2
    assert await store.queue_depths() == {(CARRIER, 1): 2}
    assert await claim_ids(store) == ["a0", "a1"]
    assert await store.release_unsent() == 3  # every carrier
    assert await store.queue_depths() == {(CARRIER, 1): 2, ("other", 1): 1}


async def test_retry_later_holds_the_job_until_due(store: Store) -> None:
    await store.add_jobs([job("r"), job("s")])
    await store.claim(CARRIER, 10, time.time())
    now = time.time()
    assert await store.retry_later("r", 1, now + 60)
    assert await store.next_due(CARRIER) == pytest.approx(now + 60)
    assert await store.claim(CARRIER, 10, now) == []
    (again,) = await store.claim(CARRIER, 10, now + 61)
    assert again.job_id == "r" and again.attempt == 1
    assert await store.next_due(CARRIER) is None
    assert not await store.retry_later("missing", 1, now)
    await store.mark_submitted("s", CARRIER, ["1"], ["1"], True, [])
    assert not await store.retry_later("s", 1, now)


async def test_claim_walks_the_queue_index_sqlite(tmp_path: Path) -> None:
    async with Store(str(tmp_path / "gw.db")) as store:
        await _claim_plan(store)


async def _claim_plan(store: Store) -> None:
    plan = await store.run(
        lambda c: c.execute("EXPLAIN QUERY PLAN " + store_ops._CLAIM, (CARRIER, 0.0, 10)).fetchall()
    )
    details = " ".join(row[-1] for row in plan)
    assert "USING INDEX jobs_queue (carrier=? AND state=?)" in details
    assert "TEMP B-TREE" not in details  # ordered by the index, no sort of all rows


# -- submit, finish, receipts --------------------------------------------------------------
async def test_mark_submitted_maps_every_part_and_stores_events(store: Store) -> None:
    await store.add_jobs([job("m", response_topic="app/r", correlation_data=b"c1")])
    await store.claim(CARRIER, 1, time.time())
    await store.mark_in_flight(["m"])
    view = await store.job("m")
    assert view is not None and view.state == "in_flight"
    events = [OutboxEvent("sms/status/m", b"submitted"), OutboxEvent("app/r", b"s", b"c1")]
    await store.mark_submitted("m", CARRIER, ["a1", "a2"], ["0A1", "0A2"], False, events)
    assert await store.lookup(CARRIER, "a2") == ("m", 1, 2)
    assert await store.lookup("mobifone", "a2") is None
    view = await store.job("m")
    assert view is not None
    assert (view.state, view.status, view.parts) == ("submitted", "submitted", 2)
    assert view.message_ids == ["0A1", "0A2"] and view.part_states == [None, None]
    assert (view.response_topic, view.correlation_data) == ("app/r", b"c1")
    pending = await store.pending_events(10)
    assert [(e.topic, e.payload, e.correlation_data) for e in pending] == [
        ("sms/status/m", b"submitted", None),
        ("app/r", b"s", b"c1"),
    ]
    # Ids are the store's, read back (a writer process numbers copies of ``events``).
    assert 0 < pending[0].event_id < pending[1].event_id


async def test_the_store_never_changes_the_events_it_is_given(store: Store) -> None:
    """One rule for every writer and backend: an ``OutboxEvent`` handed to the store keeps
    its ``event_id`` (a writer process could only number a copy); ids come back from
    ``add_events`` and on the events ``pending_events`` reads."""
    await store.add_jobs([job("e1"), job("e2")])
    await store.claim(CARRIER, 10, time.time())
    await store.mark_in_flight(["e1", "e2"])
    given = {
        "add_events": [OutboxEvent("sms/inbound/x", b"mo")],
        "mark_submitted": [OutboxEvent("sms/status/e1", b"submitted")],
        "finish": [OutboxEvent("sms/status/e2", b"failed"), OutboxEvent("app/r", b"f", b"c")],
    }
    ids = await store.add_events(given["add_events"])
    await store.mark_submitted("e1", CARRIER, ["1"], ["1"], False, given["mark_submitted"])
    assert await store.finish("e2", "failed", given["finish"])
    assert {name: [e.event_id for e in events] for name, events in given.items()} == {
        "add_events": [0],
        "mark_submitted": [0],
        "finish": [0, 0],
    }
    pending = await store.pending_events(10)
    assert [e.topic for e in pending] == [e.topic for events in given.values() for e in events]
    assert pending[0].event_id == ids[0] and all(e.event_id > 0 for e in pending)


async def test_mark_submitted_without_dlr_is_final(store: Store) -> None:
    await store.add_jobs([job("nodlr", dlr=False)])
    await store.mark_submitted("nodlr", CARRIER, ["1"], ["1"], True, [])
    view = await store.job("nodlr")
    assert view is not None and (view.state, view.status) == ("final", "submitted")
    assert not await store.finish("nodlr", "failed", [OutboxEvent("t", b"x")])
    assert await store.outbox_size() == 0


async def test_a_failing_operation_does_not_fail_its_batch(store: Store) -> None:
    await store.add_jobs([job("ok")])
    results = await asyncio.gather(
        store.mark_submitted("nope", CARRIER, ["1"], ["1"], False, [OutboxEvent("t", b"")]),
        store.mark_submitted("ok", CARRIER, ["1", "2"], ["1"], False, []),
        store.add_jobs([job("fine")]),
        store.mark_submitted("ok", CARRIER, ["9"], ["9"], False, [OutboxEvent("t", b"")]),
        return_exceptions=True,
    )
    assert isinstance(results[0], KeyError)
    assert isinstance(results[1], ValueError)
    assert results[2] == [True]
    assert results[3] is None
    assert await store.lookup(CARRIER, "9") == ("ok", 0, 1)
    assert await store.outbox_size() == 1  # the failed operation's event was rolled back
    await store.finish("ok", "delivered", [])
    with pytest.raises(ValueError, match="already final"):
        await store.mark_submitted("ok", CARRIER, ["8"], ["8"], False, [])


async def test_a_batch_without_failures_runs_no_savepoints_sqlite(tmp_path: Path) -> None:
    """The writer's fast path: SAVEPOINTs (two statements per operation) only when an
    operation of the batch raised, for the replay that isolates it."""
    async with Store(str(tmp_path / "gw.db")) as store:
        await _no_savepoints(store)


async def _no_savepoints(store: Store) -> None:
    statements: list[str] = []
    await store.run(lambda conn: conn.set_trace_callback(statements.append))
    await store.add_jobs([job("a"), job("b")])
    await asyncio.gather(
        store.mark_submitted("a", CARRIER, ["1"], ["1"], False, [OutboxEvent("t", b"")]),
        store.mark_submitted("b", CARRIER, ["2"], ["2"], False, [OutboxEvent("t", b"")]),
    )
    assert not [s for s in statements if "SAVEPOINT" in s.upper()]
    await asyncio.gather(
        store.mark_submitted("nope", CARRIER, ["3"], ["3"], False, []),
        store.finish("a", "delivered", []),
        return_exceptions=True,
    )
    assert [s for s in statements if s.upper().startswith("SAVEPOINT")]
    assert (await store.job("a")).status == "delivered"  # type: ignore[union-attr]
    await store.run(lambda conn: conn.set_trace_callback(None))


async def test_finish_records_one_final_status(store: Store) -> None:
    await store.add_jobs([job("f")])
    await store.claim(CARRIER, 1, time.time())
    assert await store.finish("f", "rejected", [OutboxEvent("sms/status/f", b"r")], code="x")
    assert not await store.finish("f", "failed", [OutboxEvent("sms/status/f", b"f")])
    assert not await store.finish("ghost", "failed", [])
    view = await store.job("f")
    assert view is not None and (view.state, view.status, view.error_code) == (
        "final",
        "rejected",
        "x",
    )
    assert await topics(store) == ["sms/status/f"]
    assert await store.job("ghost") is None


async def test_add_counted_bills_tenant_parts_with_the_job_and_refuses_over_quota(
    store: Store,
) -> None:
    day = "2026-12-06"

    def use(parts: int, limit: int | None = 5) -> Usage:
        return Usage(tenant="shop", day=day, parts=parts, limit=limit)

    added = await store.add_counted(
        [job("shop/a"), job("shop/b"), job("shop/a"), job("shop/c"), job("plain")],
        [use(2), use(3), use(2), use(1), None],
    )
    # a: 2 parts; b: 3 (total 5); a again: a duplicate, not billed; c: over 5; plain: uncounted
    assert added == [True, True, False, None, True]
    assert await store.tenant_usage("shop", day) == 5
    assert await store.job("shop/c") is None, "a job over quota is not stored"
    # a redelivered job over quota is still a duplicate, not a quota refusal
    assert await store.add_counted([job("shop/b")], [use(3)]) == [False]
    assert await store.add_counted([job("shop/d")], [use(9, None)]) == [True]  # no limit
    assert await store.tenant_usage("shop", day) == 14
    assert await store.tenant_usage("shop", "2026-12-07") == 0


async def test_count_waiting_is_per_tenant_key_range_until_submitted(store: Store) -> None:
    await store.add_jobs([job("shop/1"), job("shop/2"), job("shop2/1"), job("x"), job("shop0")])
    assert await store.count_waiting("shop/") == 2
    assert await store.count_waiting("shop2/") == 1
    assert await store.count_waiting(None) == 2  # ids without a tenant: x, shop0
    await store.claim(CARRIER, 1, time.time())  # claimed (sending): still waiting
    assert await store.count_waiting("shop/") == 2
    await store.mark_submitted("shop/1", CARRIER, ["1"], ["1"], False, [])
    await store.finish("shop/2", "failed", [])
    assert await store.count_waiting("shop/") == 0


async def test_finishing_a_queued_job_takes_it_out_of_the_queue(store: Store) -> None:
    await store.add_jobs([job("e1"), job("e2")])
    assert await store.finish("e1", "expired", [], code="ttl")
    assert await store.queue_depths() == {(CARRIER, 1): 1}
    assert await claim_ids(store) == ["e2"]


async def test_multipart_job_is_delivered_when_every_part_is(store: Store) -> None:
    await store.add_jobs([job("d", response_topic="app/r", correlation_data=b"k")])
    await store.mark_submitted("d", CARRIER, ["p0", "p1", "p2"], ["P0", "P1", "P2"], False, [])
    assert await store.apply_receipt("d", 1, "DELIVRD", status_events) is None
    assert await store.apply_receipt("d", 0, "ENROUTE", status_events) is None
    assert await store.apply_receipt("d", 0, "DELIVRD", status_events) is None
    assert await store.outbox_size() == 0
    assert await store.lookup(CARRIER, "p2") == ("d", 2, 3)
    assert await store.apply_receipt("d", 2, "DELIVRD", status_events) == "delivered"
    view = await store.job("d")
    assert view is not None and view.part_states == ["DELIVRD"] * 3
    assert (view.state, view.status) == ("final", "delivered")
    pending = await store.pending_events(10)
    assert [(e.topic, e.correlation_data) for e in pending] == [
        ("sms/status/d", None),
        ("app/r", b"k"),
    ]
    assert json.loads(pending[0].payload) == {"id": "d", "status": "delivered", "parts": 3}
    # A late duplicate receipt is recorded but makes no second final event.
    assert await store.apply_receipt("d", 2, "DELIVRD", status_events) is None
    assert await store.outbox_size() == 2


def view_events(view: JobView, status: str) -> list[OutboxEvent]:
    """``make_events`` whose event carries the view it was given (module-level: it pickles
    to a writer process, where a closure's list would fill a copy)."""
    return [replace(event, payload=repr(view).encode()) for event in status_events(view, status)]


async def test_a_single_part_receipt_makes_events_from_the_whole_view(store: Store) -> None:
    await store.add_jobs(
        [
            job(
                "s",
                response_topic="app/r",
                correlation_data=b"k",
                attempts=(("b", "refused"),),
                expires_at=time.time() + 3600,
                send_at=time.time() - 60,
                attempt=2,
            )
        ]
    )
    await store.claim(CARRIER, 1, time.time())
    await store.mark_submitted("s", CARRIER, ["n1"], ["Raw-1"], False, [])
    assert await store.apply_receipt("s", 0, "ENROUTE", view_events) is None
    view = await store.job("s")
    assert view is not None and view.part_states == ["ENROUTE"] and view.state == "submitted"
    assert await store.apply_receipt("s", 0, "DELIVRD", view_events) == "delivered"
    after = await store.job("s")
    made = await store.pending_events(10)
    assert made[0].payload == repr(after).encode()  # the events came from the job as stored
    assert after is not None and (after.state, after.status) == ("final", "delivered")
    assert (after.message_ids, after.part_states) == (["Raw-1"], ["DELIVRD"])
    assert after.attempts == (("b", "refused"),) and after.correlation_data == b"k"
    assert await topics(store) == ["sms/status/s", "app/r"]


async def test_a_receipt_for_a_job_final_at_submit_is_recorded_without_events(
    store: Store,
) -> None:
    await store.add_jobs([job("f", dlr=False)])
    await store.mark_submitted("f", CARRIER, ["f1"], ["f1"], True, [])
    assert await store.apply_receipt("f", 0, "UNDELIV", status_events) is None
    view = await store.job("f")
    assert view is not None and (view.status, view.part_states) == ("submitted", ["UNDELIV"])
    assert await store.outbox_size() == 0


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("UNDELIV", "undelivered"),
        ("REJECTD", "undelivered"),
        ("DELETED", "undelivered"),
        ("UNKNOWN", "undelivered"),
        ("EXPIRED", "expired"),
    ],
)
async def test_one_failed_part_makes_the_job_final(store: Store, state: str, status: str) -> None:
    await store.add_jobs([job("u")])
    await store.mark_submitted("u", CARRIER, ["a", "b"], ["a", "b"], False, [])
    assert await store.apply_receipt("u", 0, state, status_events) == status
    assert await store.apply_receipt("u", 1, "DELIVRD", status_events) is None
    view = await store.job("u")
    assert view is not None and view.status == status
    assert view.part_states == [state, "DELIVRD"]
    assert await topics(store) == ["sms/status/u"]


async def test_receipts_for_unknown_ids_or_parts_match_nothing(store: Store) -> None:
    assert await store.lookup(CARRIER, "nothing") is None
    assert await store.apply_receipt("ghost", 0, "DELIVRD", status_events) is None
    await store.add_jobs([job("one")])
    await store.mark_submitted("one", CARRIER, ["1"], ["1"], False, [])
    assert await store.apply_receipt("one", 5, "DELIVRD", status_events) is None


async def test_recycled_message_id_points_at_the_newer_job(store: Store, backend: Backend) -> None:
    await store.add_jobs([job("old"), job("new")])
    await store.mark_submitted("old", CARRIER, ["42"], ["42"], False, [])
    await store.finish("old", "delivered", [])
    await store.mark_submitted("new", CARRIER, ["42"], ["42"], False, [])
    assert await store.lookup(CARRIER, "42") == ("new", 0, 1)
    # Purging the old job must not take the new job's mapping with it.
    await backend.sql(store, "UPDATE jobs SET done_at = 1 WHERE job_id = 'old'")
    assert await store.purge(100.0) == 1
    assert await store.lookup(CARRIER, "42") == ("new", 0, 1)


def broken(view: JobView, status: str) -> list[OutboxEvent]:
    raise RuntimeError("bad template")


async def test_make_events_failure_rolls_back_the_receipt(store: Store) -> None:
    await store.add_jobs([job("boom")])
    await store.mark_submitted("boom", CARRIER, ["b"], ["b"], False, [])
    with pytest.raises(RuntimeError, match="bad template"):
        await store.apply_receipt("boom", 0, "DELIVRD", broken)
    view = await store.job("boom")
    assert view is not None and view.state == "submitted" and view.part_states == [None]


# -- rejected, outbox ---------------------------------------------------------------------
async def test_add_rejected_is_final_with_its_event_and_a_dedup_key(store: Store) -> None:
    events = [OutboxEvent("sms/status/bad", b"rejected")]
    assert await store.add_rejected(
        "bad", events, code="invalid_to", response_topic="app/r", correlation_data=b"c"
    )
    assert not await store.add_rejected("bad", [OutboxEvent("sms/status/bad", b"again")])
    assert await store.add_jobs([job("bad")]) == [False]
    view = await store.job("bad")
    assert view is not None
    assert (view.state, view.status, view.error_code) == ("final", "rejected", "invalid_to")
    assert (view.response_topic, view.correlation_data) == ("app/r", b"c")
    assert [e.payload for e in await store.pending_events(10)] == [b"rejected"]
    assert await store.queue_depths() == {}


@pytest.mark.parametrize("acked", [1, 3, 511, 512, 513, 600])
async def test_an_ack_of_any_length_deletes_exactly_those_events(store: Store, acked: int) -> None:
    """Acks of every length (padded statements, chunks of 512) delete what they name,
    count it once, and leave the rest."""
    ids = await store.add_events([OutboxEvent(f"t/{i}", b"") for i in range(acked + 5)])
    assert await store.ack_events(ids[:acked]) == acked
    assert await store.outbox_size() == 5
    assert [e.event_id for e in await store.pending_events(10)] == ids[acked:]


async def test_outbox_pages_acks_and_never_reuses_ids(store: Store) -> None:
    ids = await store.add_events([OutboxEvent(f"sms/inbound/{i}", b"%d" % i) for i in range(5)])
    assert ids == sorted(ids) and len(set(ids)) == 5
    first = await store.pending_events(2)
    assert [e.event_id for e in first] == ids[:2]
    rest = await store.pending_events(10, after_id=first[-1].event_id)
    assert [e.event_id for e in rest] == ids[2:]
    assert await store.ack_events(ids) == 5
    assert await store.ack_events(ids) == 0
    assert await store.outbox_size() == 0
    (later,) = await store.add_events([OutboxEvent("t", b"")])
    assert later > ids[-1]


async def test_set_aside_moves_events_to_dead_events_in_one_transaction(backend: Backend) -> None:
    """Set aside = out of the outbox and into dead_events, with its reason, atomically;
    the count survives a reopen; an id no longer in the outbox is skipped."""
    async with backend.open() as store:
        ids = await store.add_events(
            [OutboxEvent("x/#", b"bad", b"corr"), OutboxEvent("sms/status/ok", b"ok")]
        )
        before = time.time()
        assert await store.set_aside([(ids[0], "topic contains a wildcard '#'")]) == 1
        assert await store.set_aside([(ids[0], "again"), (ids[1] + 99, "unknown")]) == 0
        assert await store.outbox_size() == 1
        assert [e.event_id for e in await store.pending_events(10)] == [ids[1]]
        (dead,) = await store.dead_events(10)
        assert (dead.event_id, dead.topic, dead.payload, dead.correlation_data) == (
            ids[0],
            "x/#",
            b"bad",
            b"corr",
        )
        assert dead.reason == "topic contains a wildcard '#'"
        assert before <= dead.dead_at <= time.time()
        assert store.dead_events_count() == 1
    async with backend.open() as store:
        assert store.dead_events_count() == 1
        assert await store.outbox_size() == 1


async def test_set_aside_rolls_back_with_its_operation(store: Store) -> None:
    """A failure inside the operation moves nothing: no event both dead and pending."""
    (event_id,) = await store.add_events([OutboxEvent("x/+", b"p")])
    with pytest.raises(ValueError):
        await store.set_aside([(event_id, "ok"), (event_id, None, "bad row")])  # type: ignore[list-item]
    assert [e.event_id for e in await store.pending_events(10)] == [event_id]
    assert await store.dead_events(10) == []


async def test_dead_events_newest_first_limited_and_purged(store: Store) -> None:
    ids = await store.add_events([OutboxEvent(f"t/{i}", b"%d" % i) for i in range(3)])
    for event_id in ids:
        await store.set_aside([(event_id, f"reason {event_id}")])
    listed = await store.dead_events(2)
    assert [d.event_id for d in listed] == [ids[2], ids[1]]
    assert await store.purge_dead_events(older_than=listed[-1].dead_at) == 1
    assert [d.event_id for d in await store.dead_events(10)] == [ids[2], ids[1]]
    assert await store.purge_dead_events(older_than=time.time() + 1) == 2
    assert store.dead_events_count() == 0


# -- recover, purge, depths, metrics ------------------------------------------------------
async def test_recover_requeues_claimed_and_applies_policy_to_in_flight(backend: Backend) -> None:
    async with backend.open() as store:
        await store.add_jobs([job(f"v{i}") for i in range(4)])
        await store.add_jobs([job("m0", carrier="mobifone"), job("m1", carrier="mobifone")])
        await store.claim(CARRIER, 10, time.time())
        await store.claim("mobifone", 10, time.time())
        await store.mark_in_flight(["v1", "v3", "m1"])
    # a "crash": reopen with jobs left sending / in flight
    async with backend.open() as store:
        report = await store.recover(lambda carrier: carrier == "mobifone", status_events)
        assert (report.requeued, report.resent, report.failed) == (3, 1, ["v1", "v3"])
        assert await claim_ids(store) == ["v0", "v2"]
        assert await claim_ids(store, carrier="mobifone") == ["m0", "m1"]
        view = await store.job("v1")
        assert view is not None
        assert (view.status, view.error_code) == ("failed", "unknown_outcome")
        assert await topics(store) == ["sms/status/v1", "sms/status/v3"]


async def test_cancel_only_a_queued_job_and_keep_the_depths(store: Store) -> None:
    """smppgw ctl jobs cancel: queued → final cancelled with its event in the same
    transaction; a claimed job (a submit_sm may be on its way) is left alone."""
    await store.add_jobs([job("q"), job("c"), job("h", lane=0)])
    assert await claim_ids(store, limit=1, carrier=CARRIER) == ["h"]
    view, cancelled = await store.cancel_queued("q", status_events)
    assert cancelled and view is not None
    assert (view.state, view.status) == ("final", "cancelled")
    assert await topics(store) == ["sms/status/q"]
    assert await store.queue_depths() == {(CARRIER, 1): 1}
    view, cancelled = await store.cancel_queued("h", status_events)  # claimed
    assert not cancelled and view is not None and view.state == "sending"
    view, cancelled = await store.cancel_queued("q", status_events)  # already final
    assert not cancelled and view is not None and view.status == "cancelled"
    assert await store.cancel_queued("nope", status_events) == (None, False)
    assert await topics(store) == ["sms/status/q"]
    assert await claim_ids(store) == ["c"]


async def test_requeue_only_an_unknown_outcome_with_its_text(backend: Backend) -> None:
    async with backend.open(keep_text=True) as store:
        await store.add_jobs([job("u"), job("r")])
        await store.claim(CARRIER, 10, time.time())
        await store.mark_in_flight(["u"])
        await store.finish("r", "rejected", [], code="ESME_RINVDSTADR")
    async with backend.open(keep_text=True) as store:
        await store.recover(lambda carrier: False, status_events)
        assert (await store.requeue_unknown("r"))[1] is False
        view, moved = await store.requeue_unknown("u")
        assert moved and view is not None and (view.state, view.status) == ("queued", None)
        assert await store.queue_depths() == {(CARRIER, 1): 1}
        [again] = await store.claim(CARRIER, 10, time.time())
        assert again.job_id == "u" and again.text
        listed = await store.list_jobs(carrier=CARRIER, limit=10)
        assert [v.job_id for v in listed] == ["r", "u"]  # newest first
        assert [v.job_id for v in await store.list_jobs(state=JobState.FINAL)] == ["r"]


async def test_requeue_refused_once_the_text_was_blanked(backend: Backend) -> None:
    async with backend.open() as store:  # keep_text off: the text goes when it ends
        await store.add_jobs([job("u")])
        await store.claim(CARRIER, 10, time.time())
        await store.mark_in_flight(["u"])
    async with backend.open() as store:
        await store.recover(lambda carrier: False, status_events)
        view, moved = await store.requeue_unknown("u")
        assert not moved and view is not None and view.error_code == "unknown_outcome"


async def test_submit_blanks_the_text_in_its_own_update_sqlite(tmp_path: Path) -> None:
    """keep_text off: the submit's UPDATE itself sets the text NULL (one write of the row);
    the trigger is only the safety net, so without it the text still goes."""
    async with Store(str(tmp_path / "gw.db")) as store:
        await store.run(lambda c: c.execute("DROP TRIGGER temp.blank_text_when_done"))
        await store.add_jobs([job("one"), job("two")])
        await store.claim(CARRIER, 10, time.time())
        await store.mark_submitted("one", CARRIER, ["1"], ["1"], False, [])
        await store.mark_submitted("two", CARRIER, ["2a", "2b"], ["2a", "2b"], False, [])
        rows = await store.run(lambda c: c.execute("SELECT text FROM jobs").fetchall())
    assert [tuple(row) for row in rows] == [(None,), (None,)]


async def test_purge_removes_old_finished_jobs_in_chunks(
    store: Store, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_api, "PURGE_CHUNK", 3)
    monkeypatch.setattr(pg_api, "PURGE_CHUNK", 3)
    await store.add_jobs([job(f"o{i}") for i in range(7)] + [job("queued"), job("recent")])
    for i in range(7):
        await store.mark_submitted(f"o{i}", CARRIER, [f"id{i}"], [f"id{i}"], False, [])
    await store.add_rejected("rej", [])
    await backend.sql(store, "UPDATE jobs SET done_at = 5 WHERE done_at IS NOT NULL")
    await store.mark_submitted("recent", CARRIER, ["r"], ["r"], False, [])
    assert await store.purge(10.0) == 8
    assert await store.lookup(CARRIER, "id3") is None
    assert await store.lookup(CARRIER, "r") == ("recent", 0, 1)
    remaining = await backend.sql(store, "SELECT job_id FROM jobs ORDER BY job_id")
    assert remaining == [("queued",), ("recent",)]
    assert await backend.sql(store, "SELECT count(*) FROM msgids") == [(1,)]


async def test_queue_depths_follow_every_transition_and_survive_reopen(backend: Backend) -> None:
    async with backend.open() as store:
        await store.add_jobs([job("a", 0), job("b", 1), job("c", 1), job("d", 2, "mobifone")])
        assert await store.queue_depths() == {
            (CARRIER, 0): 1,
            (CARRIER, 1): 2,
            ("mobifone", 2): 1,
        }
        await store.claim(CARRIER, 2, time.time())  # a, b
        assert await store.queue_depths() == {(CARRIER, 1): 1, ("mobifone", 2): 1}
        await store.release(["b"])
        await store.retry_later("a", 1, time.time() + 100)
        await store.finish("d", "expired", [])
        expected = {(CARRIER, 0): 1, (CARRIER, 1): 2}
        assert await store.queue_depths() == expected
    async with backend.open() as store:
        assert await store.queue_depths() == expected


def page_count(conn: sqlite3.Connection) -> int:
    """Module-level helpers for ``Store.run``: they pickle to a writer process."""
    count: int = conn.execute("PRAGMA page_count").fetchone()[0]
    return count


def max_pages(conn: sqlite3.Connection, pages: int) -> None:
    conn.execute(f"PRAGMA max_page_count={pages}")


WRITERS = pytest.mark.parametrize("writer", ["process", "thread", "auto"])


@WRITERS
async def test_a_failed_batch_leaves_the_depth_counters_alone_sqlite(
    tmp_path: Path, writer: str
) -> None:
    """SQLite keeps depths in memory, changed only when a batch commits (PostgreSQL counts
    them in the database, where a failed batch changed nothing)."""
    path = str(tmp_path / "gw.db")
    async with Store(path, writer=writer) as store:  # type: ignore[arg-type]
        await store.add_jobs([job("a", 0), job("b", 1)])
        expected = {(CARRIER, 0): 1, (CARRIER, 1): 1}
        pages = await store.run(page_count)
        await store.run(partial(max_pages, pages=pages))
        with pytest.raises(StoreError):
            await store.add_jobs([job(f"x{i}", text="x" * 2000) for i in range(50)])
        await store.run(partial(max_pages, pages=1073741823))
        assert await store.queue_depths() == expected


async def test_size_and_stats_report_the_database(store: Store) -> None:
    await store.add_jobs([job("s")])
    if hasattr(store, "refresh_size"):  # PostgreSQL: sampled, as the metrics loop does
        await store.refresh_size()
    assert store.size_bytes() > 0
    stats = store.stats()
    assert stats.commits >= 1 and stats.operations >= stats.commits
    assert stats.last_commit_seconds > 0 and stats.commit_seconds_total >= stats.last_commit_seconds


async def test_a_cancelled_caller_does_not_cancel_the_write(store: Store) -> None:
    task = asyncio.create_task(store.add_jobs([job("c")]))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.add_jobs([job("c")]) == [False]


# -- failures: locked, full ---------------------------------------------------------------
@WRITERS
async def test_database_locked_fails_the_batch_then_recovers_sqlite(
    tmp_path: Path, writer: str
) -> None:
    path = str(tmp_path / "gw.db")
    async with Store(path, busy_timeout=0.05, writer=writer) as store:  # type: ignore[arg-type]
        await store.add_jobs([job("before")])
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            results = await asyncio.gather(
                store.add_jobs([job("l1")]), store.add_jobs([job("l2")]), return_exceptions=True
            )
            assert all(isinstance(r, StoreError) for r in results), results
            assert "locked" in str(results[0])
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert await store.add_jobs([job("l1"), job("l2")]) == [True, True]
        assert store.stats().failed_batches >= 1
        assert await store.queue_depths() == {(CARRIER, 1): 3}


@WRITERS
async def test_disk_full_fails_the_batch_then_recovers_sqlite(tmp_path: Path, writer: str) -> None:
    async with Store(str(tmp_path / "gw.db"), writer=writer) as store:  # type: ignore[arg-type]
        await _disk_full(store)


async def _disk_full(store: Store) -> None:
    pages = await store.run(page_count)
    await store.run(partial(max_pages, pages=pages))
    big = "x" * 2000
    with pytest.raises(StoreError, match="full"):
        await store.add_jobs([job(f"big{i}", text=big) for i in range(50)])
    assert await store.job("big0") is None  # the whole batch rolled back
    await store.run(partial(max_pages, pages=1073741823))
    assert await store.add_jobs([job(f"big{i}", text=big) for i in range(50)]) == [True] * 50


def sleep_then_count(conn: sqlite3.Connection, seconds: float) -> int:
    """Holds the writer busy inside a transaction (the test kills it meanwhile)."""
    time.sleep(seconds)
    count: int = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
    return count


async def test_a_killed_writer_process_fails_every_caller_with_store_error(
    tmp_path: Path,
) -> None:
    """Not restarted: what it last ran may or may not have committed, so the counters kept
    here no longer match the file; ``writer_lost`` tells the gateway to stop."""
    async with Store(str(tmp_path / "gw.db"), writer="process") as store:
        assert await store.add_jobs([job("a")]) == [True]
        pid = store.writer_pid
        lost = store.writer_lost
        assert pid is not None and lost is not None and not lost.is_set()
        busy = asyncio.ensure_future(store.run(partial(sleep_then_count, seconds=30.0)))
        queued = asyncio.ensure_future(store.add_jobs([job("b")]))
        await asyncio.sleep(0.3)  # both sent; the first one is running
        os.kill(pid, signal.SIGKILL)
        for waiting in (busy, queued):
            with pytest.raises(StoreError, match="store writer process exited"):
                await waiting
        assert lost.is_set()
        with pytest.raises(StoreError, match="store writer process exited"):
            await store.add_jobs([job("c")])
    async with Store(str(tmp_path / "gw.db"), writer="process") as store:
        assert await store.add_jobs([job("a"), job("b")]) == [False, True]  # "b": rolled back


# -- durability ---------------------------------------------------------------------------
_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from smppgw.store import Store, StoredJob
    from smppgw.store.pg import PostgresStore

    async def main(where, writer):
        if where.startswith("postgresql://"):
            opened = PostgresStore(where, node="gw-test")
        else:
            opened = Store(where, writer=writer)
        async with opened as store:
            sys.stdout.write(f"writer {getattr(store, 'writer_pid', None)}\\n")
            counter = iter(range(10**9))
            async def worker():
                for i in counter:
                    job_id = f"k{i}"
                    await store.add_jobs([StoredJob(job_id, "viettel", i % 3, "849", "t")])
                    sys.stdout.write(job_id + "\\n")
                    sys.stdout.flush()
            await asyncio.gather(*(worker() for _ in range(50)))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def test_kill_9_loses_no_acknowledged_job(backend: Backend) -> None:
    """Also: a writer process does not outlive its gateway (end of file on its socket)."""
    where = getattr(backend, "dsn", None) or getattr(backend, "path", "")
    writer = getattr(backend, "writer", "thread")
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, where, writer], stdout=subprocess.PIPE, text=True
    )
    acked: list[str] = []
    writer_pid: int | None = None
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 20
        while len(acked) < 3000 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            if line.startswith("k"):  # not a log line
                acked.append(line.strip())
            elif line.startswith("writer ") and line.split()[1] != "None":
                writer_pid = int(line.split()[1])
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= 3000
    assert (writer_pid is not None) == (writer in ("process", "auto"))
    if writer_pid is not None:
        assert wait_gone(writer_pid), "the writer process outlived its parent"
    async with backend.open() as store:
        stored = {row[0] for row in await backend.sql(store, "SELECT job_id FROM jobs")}
        assert set(acked) <= stored
        depths = await store.queue_depths()
        assert sum(depths.values()) == len(stored)


# -- bounded memory -----------------------------------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_200k_queued_jobs_are_claimed_by_index_in_small_batches(store: Store) -> None:
    # Low lane first, high lane last: claim must find the high jobs at the end of the
    # table through the index, not by reading everything before them.
    total = 200_000
    lanes = [2] * 100_000 + [1] * 66_000 + [0] * 34_000
    for start in range(0, total, 50_000):
        await store.add_jobs([job(f"b{i:06d}", lanes[i]) for i in range(start, start + 50_000)])
    assert await store.queue_depths() == {
        (CARRIER, 2): 100_000,
        (CARRIER, 1): 66_000,
        (CARRIER, 0): 34_000,
    }
    rss_before = _rss_bytes()
    started = time.perf_counter()
    first = await claim_ids(store, 1000)
    assert time.perf_counter() - started < 0.5
    assert first == [f"b{i:06d}" for i in range(166_000, 167_000)]
    seen = first
    for _ in range(40):
        batch = await store.claim(CARRIER, 1000, time.time())
        assert [j.lane for j in batch] == sorted(j.lane for j in batch)
        seen.extend(j.job_id for j in batch)
    assert seen[33_000:34_000] == [f"b{i:06d}" for i in range(199_000, 200_000)]
    assert seen[34_000:35_000] == [f"b{i:06d}" for i in range(100_000, 101_000)]
    # 41k claimed jobs as rows would be tens of MB; claiming in batches stays flat.
    assert _rss_bytes() - rss_before < 30 * 2**20


async def test_a_writer_bug_never_leaves_callers_hanging_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(str(tmp_path / "gw.db"))
    await store.open()

    def broken(tx: object) -> None:
        raise RuntimeError("bug in the writer")

    monkeypatch.setattr(store._writer, "_on_commit", broken)
    # The batch committed before the bug: its caller hears so.
    assert await asyncio.wait_for(store.add_jobs([job("w")]), 5) == [True]
    with pytest.raises(StoreError):
        await asyncio.wait_for(store.add_jobs([job("w2")]), 5)
    await asyncio.wait_for(store.close(), 5)
    async with Store(str(tmp_path / "gw.db")) as reopened:
        assert await reopened.add_jobs([job("w")]) == [False]
