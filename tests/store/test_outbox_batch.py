"""The writer's per-job savings (issue 13, steps 40–42). A batch's outbox events go in
together before its COMMIT (``store/outbox_rows.py``), and values bind through the plain
adapters (``schema.bind_plainly``): what that must not change (ids in the order the
operations added their events, a batch's own events readable in it, a refused event
failing only its operation, values stored as before), on every backend where it is a
contract, and what it must do on SQLite (few statements; the writer process's collector
thresholds)."""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import sqlite3
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from smppgw.collector import THRESHOLDS
from smppgw.store import OutboxEvent, Store, StoreError, frames
from smppgw.store import ops as store_ops
from smppgw.store.batch import Tx
from smppgw.store.calls import Call
from smppgw.store.schema import connect
from store.conftest import Backend
from store.test_store import CARRIER, job


async def test_events_of_one_batch_keep_the_order_their_operations_added_them(
    backend: Backend,
) -> None:
    async with backend.open() as store:
        await store.add_jobs([job("a"), job("b")])
        added, _, _, pending = await asyncio.gather(
            store.add_events([OutboxEvent("t/first", b"1")]),
            store.mark_submitted("a", CARRIER, ["1"], ["1"], False, [OutboxEvent("t/a", b"a")]),
            store.finish("b", "failed", [OutboxEvent("t/b", b"b", b"cb")], code="x"),
            store.pending_events(10),
        )
        later = await store.add_events([OutboxEvent("t/last", b"9")])
        assert [(e.topic, e.payload, e.correlation_data) for e in pending] == [
            ("t/first", b"1", None),
            ("t/a", b"a", None),
            ("t/b", b"b", b"cb"),
        ]
        ids = [e.event_id for e in pending]
        assert ids == sorted(ids) and len(set(ids)) == 3 and ids[0] == added[0]
        assert later[0] > ids[-1]
        assert await store.outbox_size() == 4


async def test_an_event_the_outbox_refuses_fails_only_its_operation(backend: Backend) -> None:
    """The events go in at the end of the batch; one the table refuses (no payload) still
    fails its own operation alone, with its state change, as when it went in at once."""
    async with backend.open() as store:
        await store.add_jobs([job("bad"), job("good")])
        results = await asyncio.gather(
            store.finish("bad", "failed", [OutboxEvent("t/bad", None)], code="x"),  # type: ignore[arg-type]
            store.finish("good", "failed", [OutboxEvent("t/good", b"g")], code="x"),
            return_exceptions=True,
        )
        assert isinstance(results[0], Exception) and results[1] is True
        assert [e.topic for e in await store.pending_events(10)] == ["t/good"]
        assert await store.outbox_size() == 1
        bad = await store.job("bad")
        assert bad is not None and bad.state == "queued"  # rolled back with its event


def _outbox_inserts(conn: sqlite3.Connection) -> None:
    conn.set_trace_callback(_STATEMENTS.append)


_STATEMENTS: list[str] = []


async def test_a_batchs_events_go_in_a_few_statements_sqlite(tmp_path: Path) -> None:
    """20 submits in one batch: their 20 events in two INSERTs (16 + 4 rows), not 20, and
    their 20 message ids likewise."""
    _STATEMENTS.clear()
    async with Store(str(tmp_path / "gw.db"), writer="thread") as store:
        await store.add_jobs([job(f"j{i}") for i in range(20)])
        await store.run(_outbox_inserts)
        await asyncio.gather(
            *(
                store.mark_submitted(
                    f"j{i}", CARRIER, [str(i)], [str(i)], False, [OutboxEvent(f"t/{i}", b"e")]
                )
                for i in range(20)
            )
        )
        await store.run(lambda conn: conn.set_trace_callback(None))
        pending = await store.pending_events(50)
    inserts = [s for s in _STATEMENTS if s.startswith("INSERT INTO outbox")]
    assert len(inserts) == 2
    mappings = [s for s in _STATEMENTS if s.startswith("INSERT OR REPLACE INTO msgids")]
    assert len(mappings) == 2
    assert [e.topic for e in pending] == [f"t/{i}" for i in range(20)]


def test_values_bind_as_they_did_without_adapters_sqlite(tmp_path: Path) -> None:
    """None, bool and bytes have adapters of their own after ``connect`` (the fast lookup),
    and store exactly as sqlite3 stores them without: NULL, integer 0/1, blob."""
    conn = connect(str(tmp_path / "gw.db"), busy_timeout=1.0, synchronous="NORMAL")
    try:
        for kind in (type(None), bool, bytes):
            assert (kind, sqlite3.PrepareProtocol) in sqlite3.adapters
        row = conn.execute(
            "SELECT ?, typeof(?), ?, typeof(?), ?, typeof(?), ?, typeof(?)",
            (None, None, True, True, False, False, b"\x00b", b"\x00b"),
        ).fetchone()
        assert row == (None, "null", 1, "integer", 0, "integer", b"\x00b", "blob")
        # A subclass is not keyed: it takes sqlite3's usual path, as before.
        assert conn.execute("SELECT typeof(?)", (bytearray(b"x"),)).fetchone() == ("blob",)
    finally:
        conn.close()


async def test_a_store_error_for_a_refused_event_names_the_constraint_sqlite(
    tmp_path: Path,
) -> None:
    async with Store(str(tmp_path / "gw.db"), writer="process") as store:
        try:
            await store.add_events([OutboxEvent("t", None)])  # type: ignore[arg-type]
        except StoreError as exc:
            assert "NOT NULL" in str(exc)
        else:
            raise AssertionError("an event without a payload was stored")


def collector_thresholds(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """Module-level, so it pickles to the writer process (and runs there)."""
    return gc.get_threshold()


async def test_the_writer_process_collects_cycles_seldom_sqlite(tmp_path: Path) -> None:
    """The writer process uses the gateway's collector thresholds, not the default 700."""
    async with Store(str(tmp_path / "gw.db"), writer="process") as store:
        assert await store.run(collector_thresholds) == THRESHOLDS
        assert os.getpid() != store.writer_pid


def test_a_call_pickles_positionally_and_runs_its_operation_sqlite(tmp_path: Path) -> None:
    """What the writer process receives: the operation by reference, its arguments in
    order, smaller than the keyword partial it replaces; called with a ``tx``, it runs."""
    args = ("j1", "viettel", ["a1"], ["A1"], False, [OutboxEvent("t/j1", b"e")])
    names = ("job_id", "carrier", "normalized_ids", "raw_ids", "final", "events")
    call = Call(store_ops.mark_submitted, *args)
    sent = pickle.dumps(call, frames.PROTOCOL)
    keyword = partial(store_ops.mark_submitted, **dict(zip(names, args, strict=True)))
    assert len(sent) < len(pickle.dumps(keyword, frames.PROTOCOL))
    back = pickle.loads(sent)
    assert back.fn is store_ops.mark_submitted and back.args[:5] == args[:5]
    conn = connect(str(tmp_path / "gw.db"), busy_timeout=1.0, synchronous="NORMAL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        store_ops.add_jobs(Tx(conn, 0.0), [job("j1")])
        assert Call(store_ops.lookup, "viettel", "a1")(Tx(conn, 0.0)) is None
        back(Tx(conn, 0.0))
        assert Call(store_ops.lookup, "viettel", "a1")(Tx(conn, 0.0)) == ("j1", 0, 1)
        conn.execute("COMMIT")
    finally:
        conn.close()


async def test_a_batch_of_jobs_answers_new_or_known_per_job_in_order(backend: Backend) -> None:
    """Jobs go in many to a statement: still one answer per job, in order; an id already
    stored, or repeated within the call (the first is new), is known; over 256 jobs (two
    statements) the same; the queue depth counts only the new ones; events of new jobs
    only, in job order."""
    async with backend.open() as store:
        assert await store.add_jobs([job("old")]) == [True]
        ids = ["old", "n0", "n1", "n0", *(f"m{i}" for i in range(300)), "m5", "tail"]
        jobs = [replace(job(i), events=(OutboxEvent(f"t/{i}", b"e"),)) for i in ids]
        added = await store.add_jobs(jobs)
        assert added == [False, True, True, False, *([True] * 300), False, True]
        assert (await store.queue_depths())[(CARRIER, 1)] == 1 + 303
        topics = [e.topic for e in await store.pending_events(1000)]
        assert topics == ["t/n0", "t/n1", *(f"t/m{i}" for i in range(300)), "t/tail"]
        claimed = await store.claim(CARRIER, 1000, time.time())
        assert [j.job_id for j in claimed] == [
            "old",
            "n0",
            "n1",
            *(f"m{i}" for i in range(300)),
            "tail",
        ]


async def test_a_batchs_message_ids_are_found_in_it_and_the_newest_wins(backend: Backend) -> None:
    """Mappings go in with the batch's others: a lookup later in the same batch finds one;
    an id two submits of one batch share points at the later job (a recycled id); a
    multi-part job maps every part."""
    async with backend.open() as store:
        await store.add_jobs([job("a"), job("b"), job("c")])
        _, found, _, _, recycled, multi = await asyncio.gather(
            store.mark_submitted("a", CARRIER, ["r"], ["R"], False, []),
            store.lookup(CARRIER, "r"),
            store.mark_submitted("b", CARRIER, ["r"], ["R"], False, []),
            store.mark_submitted("c", CARRIER, ["c1", "c2"], ["C1", "C2"], False, []),
            store.lookup(CARRIER, "r"),
            store.lookup(CARRIER, "c2"),
        )
        assert found == ("a", 0, 1)
        assert recycled == ("b", 0, 1)
        assert multi == ("c", 1, 2)
        assert await store.lookup(CARRIER, "r") == ("b", 0, 1)
        assert await store.lookup(CARRIER, "c1") == ("c", 0, 2)
