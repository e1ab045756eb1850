"""The store's operations in PostgreSQL, each an ``async fn(tx, ...)`` run by ``PgWriter``.

Same contract as ``smppgw.store.ops`` (the SQLite operations); differences are for the
cluster: claims lock rows with ``FOR UPDATE SKIP LOCKED`` and record the claiming node as
``owner``; a node's release and recovery touch only its own jobs; outbox rows belong to
the node that wrote them (the one that publishes them) until a survivor takes them over.

Round trips: the hot path is one statement per call whatever the batch size (``unnest``
arrays in, ``RETURNING`` out): ``add_jobs``, ``claim``, ``mark_in_flight``,
``mark_submitted`` (job, message ids and events in one statement), ``pending_events``,
``ack_events``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from smppgw.outcome import job_status
from smppgw.store.model import (
    DeadEvent,
    JobState,
    JobView,
    OutboxEvent,
    RecoveryReport,
    StoredJob,
    StoreError,
    Usage,
)
from smppgw.store.pg.writer import PgTx
from smppgw.store.rows import (
    JOB_COLUMNS,
    STATE_LABELS,
    VIEW_COLUMNS,
    job_from_row,
    job_values,
    view_from_row,
)

EventMaker = Callable[[JobView, str], list[OutboxEvent]]

HELD = int(JobState.HELD)
QUEUED = int(JobState.QUEUED)
SENDING = int(JobState.SENDING)
IN_FLIGHT = int(JobState.IN_FLIGHT)
SUBMITTED = int(JobState.SUBMITTED)
FINAL = int(JobState.FINAL)

_INSERT_JOBS = f"""
    INSERT INTO jobs ({JOB_COLUMNS}, state)
    SELECT j, c, l, d, t, sa, st, sn, dl, e, rt, cd, a, r, ch::jsonb, at::jsonb,
        sat, er, hu, hr, cat, CASE WHEN hu IS NULL THEN 0 ELSE -1 END
    FROM unnest($1::text[], $2::text[], $3::smallint[], $4::text[], $5::text[], $6::text[],
                $7::smallint[], $8::smallint[], $9::bool[], $10::float8[], $11::text[],
                $12::bytea[], $13::int[], $14::float8[], $15::text[], $16::text[],
                $17::float8[], $18::int[], $19::float8[], $20::text[], $21::text[])
         WITH ORDINALITY AS u(j, c, l, d, t, sa, st, sn, dl, e, rt, cd, a, r, ch, at,
                              sat, er, hu, hr, cat, o)
    ORDER BY o
    ON CONFLICT (job_id) DO NOTHING
    RETURNING job_id
"""
_CLAIM = f"""
    WITH c AS (
        SELECT seq FROM jobs
        WHERE carrier = $1 AND state = 0 AND next_attempt <= $2
        ORDER BY lane, seq LIMIT $3
        FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs j SET state = 1, next_attempt = 0, owner = $4 FROM c WHERE j.seq = c.seq
    RETURNING j.seq, {", ".join("j." + c.strip() for c in JOB_COLUMNS.split(","))}
"""
#: Events in, ids out, in the events' order.
_INSERT_EVENTS = """
    INSERT INTO outbox (topic, payload, correlation_data, owner)
    SELECT t, p, c, $4 FROM unnest($1::text[], $2::bytea[], $3::bytea[])
        WITH ORDINALITY AS u(t, p, c, o) ORDER BY o
    RETURNING event_id
"""
#: One round trip: the job's row, its reply window, its message ids and its events. The
#: ``w``/``m``/``e`` statements return nothing: PostgreSQL runs a data-modifying ``WITH``
#: to completion whether or not the query reads it, and the events' ids are assigned in
#: the outbox (nobody reads them back here).
_SUBMIT = """
    WITH j AS (
        UPDATE jobs SET state = $2, status = 'submitted', parts = $3, message_ids = $4,
            norm_ids = $5, part_states = array_fill(NULL::text, ARRAY[$3::int]),
            done_at = $6, owner = NULL
        WHERE job_id = $1 AND state < 4
        RETURNING job_id, expect_reply, destination, response_topic, correlation_data
    ), w AS (
        INSERT INTO reply_windows (number, job_id, until, response_topic, correlation_data)
        SELECT destination, job_id, $6 + expect_reply, response_topic, correlation_data
        FROM j WHERE expect_reply IS NOT NULL
    ), m AS (
        INSERT INTO msgids (carrier, normalized_id, job_id, part, parts)
        SELECT $7, n.nid, j.job_id, n.o - 1, $3 FROM j, unnest($5::text[]) WITH ORDINALITY
            AS n(nid, o)
        ON CONFLICT (carrier, normalized_id) DO UPDATE
            SET job_id = excluded.job_id, part = excluded.part, parts = excluded.parts
    ), e AS (
        INSERT INTO outbox (topic, payload, correlation_data, owner)
        SELECT t, p, c, $11 FROM j, unnest($8::text[], $9::bytea[], $10::bytea[])
            WITH ORDINALITY AS u(t, p, c, o) ORDER BY o
    )
    SELECT count(*) FROM j
"""


def _job_args(jobs: Sequence[StoredJob]) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(21)]
    for job in jobs:
        for column, value in zip(columns, job_values(job), strict=True):
            column.append(value)
    return columns


def _jsonb_list(value: list[Any] | None) -> list[Any]:
    return list(value or [])


def _view_from_row(row: Sequence[Any]) -> JobView:
    return view_from_row(row, _jsonb_list)


def _event_args(events: Sequence[OutboxEvent]) -> list[list[Any]]:
    return [
        [e.topic for e in events],
        [e.payload for e in events],
        [e.correlation_data for e in events],
    ]


async def _add_events(tx: PgTx, events: Sequence[OutboxEvent]) -> list[int]:
    if not events:
        return []
    rows = await tx.conn.fetch(_INSERT_EVENTS, *_event_args(events), tx.node)
    return [int(row[0]) for row in rows]


# -- jobs in ----------------------------------------------------------------------------
async def add_jobs(tx: PgTx, jobs: Sequence[StoredJob]) -> list[bool]:
    if not jobs:
        return []
    rows = await tx.conn.fetch(_INSERT_JOBS, *_job_args(jobs))
    inserted = {row[0] for row in rows}
    added: list[bool] = []
    events: list[OutboxEvent] = []
    for job in jobs:  # the same id twice in one call: the first is new, the second known
        new = job.job_id in inserted
        inserted.discard(job.job_id)
        added.append(new)
        if new and job.events:  # a held job's ``scheduled`` event, in the same transaction
            events.extend(job.events)
    await _add_events(tx, events)
    return added


_USED = "SELECT parts FROM tenant_usage WHERE tenant = $1 AND day = $2"


async def add_counted(
    tx: PgTx, jobs: Sequence[StoredJob], usage: Sequence[Usage | None]
) -> list[bool | None]:
    """Tenant jobs, each with its quota check (a row lock on the tenant's day keeps two
    gateways from both taking the last parts)."""
    result: list[bool | None] = []
    for job, use in zip(jobs, usage, strict=True):
        if use is not None and use.limit is not None:
            used = await tx.conn.fetchval(_USED + " FOR UPDATE", use.tenant, use.day)
            if (used or 0) + use.parts > use.limit:
                known = await tx.conn.fetchval("SELECT 1 FROM jobs WHERE job_id = $1", job.job_id)
                result.append(False if known else None)
                continue
        new = (await add_jobs(tx, (job,)))[0]
        if new and use is not None:
            await tx.conn.execute(
                "INSERT INTO tenant_usage (tenant, day, parts) VALUES ($1, $2, $3)"
                " ON CONFLICT (tenant, day) DO UPDATE SET parts = tenant_usage.parts"
                " + excluded.parts",
                use.tenant,
                use.day,
                use.parts,
            )
        result.append(new)
    return result


async def tenant_usage(tx: PgTx, tenant: str, day: str) -> int:
    return int(await tx.conn.fetchval(_USED, tenant, day) or 0)


async def count_waiting(tx: PgTx, prefix: str | None) -> int:
    if prefix is None:
        query = "SELECT count(*) FROM jobs WHERE state < 3 AND strpos(job_id, '/') = 0"
        return int(await tx.conn.fetchval(query))
    query = "SELECT count(*) FROM jobs WHERE starts_with(job_id, $1) AND state < 3"
    return int(await tx.conn.fetchval(query, prefix))


async def add_rejected(
    tx: PgTx,
    job_id: str,
    events: Sequence[OutboxEvent],
    carrier: str | None,
    code: str | None,
    response_topic: str | None,
    correlation_data: bytes | None,
    received_at: float,
) -> bool:
    added = await tx.conn.fetchval(
        "INSERT INTO jobs (job_id, carrier, state, status, error_code, response_topic,"
        " correlation_data, received_at, done_at) VALUES ($1, $2, 4, 'rejected', $3, $4, $5,"
        " $6, $7) ON CONFLICT (job_id) DO NOTHING RETURNING 1",
        job_id,
        carrier,
        code,
        response_topic,
        correlation_data,
        received_at,
        tx.now,
    )
    if added is None:
        return False
    await _add_events(tx, events)
    return True


# -- the send path ----------------------------------------------------------------------
async def claim(tx: PgTx, carrier: str, limit: int, now: float) -> list[StoredJob]:
    rows = await tx.conn.fetch(_CLAIM, carrier, now, limit, tx.node)
    rows.sort(key=lambda row: (row[3], row[0]))  # lane, then arrival
    return [job_from_row(tuple(row)[1:]) for row in rows]


async def release(tx: PgTx, job_ids: Sequence[str]) -> int:
    result = await tx.conn.execute(
        "UPDATE jobs SET state = 0, owner = NULL WHERE job_id = ANY($1::text[])"
        " AND state + 0 IN (1, 2)",
        list(job_ids),
    )
    return _count(result)


async def release_unsent(tx: PgTx, carrier: str | None) -> int:
    """This node's claimed jobs (of ``carrier``, or all) back in their lanes: another
    gateway's claims are its own business."""
    if carrier is None:
        result = await tx.conn.execute(
            "UPDATE jobs SET state = 0, owner = NULL WHERE state IN (1, 2) AND owner = $1",
            tx.node,
        )
    else:
        result = await tx.conn.execute(
            "UPDATE jobs SET state = 0, owner = NULL WHERE state IN (1, 2) AND owner = $1"
            " AND carrier = $2",
            tx.node,
            carrier,
        )
    return _count(result)


async def retry_later(tx: PgTx, job_id: str, attempt: int, next_attempt: float) -> bool:
    done = await tx.conn.fetchval(
        "UPDATE jobs SET state = 0, attempt = $2, next_attempt = $3, owner = NULL"
        " WHERE job_id = $1 AND state BETWEEN 0 AND 2 RETURNING 1",
        job_id,
        attempt,
        next_attempt,
    )
    return done is not None


async def mark_in_flight(tx: PgTx, job_ids: Sequence[str]) -> None:
    """Only this node's claims: a job another gateway took over (our lease ran out while
    we were stalled) must not be armed here, or it could leave twice. Raises StoreError
    (nothing written) when any of them is no longer ours, so the carrier does not send."""
    ids = list(dict.fromkeys(job_ids))
    armed = await tx.conn.fetchval(
        "WITH u AS (UPDATE jobs SET state = 2 WHERE job_id = ANY($1::text[])"
        " AND state + 0 = 1 AND owner = $2 RETURNING 1) SELECT count(*) FROM u",
        ids,
        tx.node,
    )
    if armed == len(ids):
        return
    ours = await tx.conn.fetchval(
        "SELECT count(*) FROM jobs WHERE job_id = ANY($1::text[]) AND state + 0 = 2 AND owner = $2",
        ids,
        tx.node,
    )
    if ours != len(ids):
        raise StoreError(f"{len(ids) - ours} of {len(ids)} jobs are no longer this gateway's")


async def next_due(tx: PgTx, carrier: str) -> float | None:
    value = await tx.conn.fetchval(
        "SELECT min(next_attempt) FROM jobs WHERE carrier = $1 AND state = 0 AND next_attempt > 0",
        carrier,
    )
    return None if value is None else float(value)


async def mark_submitted(
    tx: PgTx,
    job_id: str,
    carrier: str,
    normalized_ids: Sequence[str],
    raw_ids: Sequence[str],
    final: bool,
    events: Sequence[OutboxEvent],
) -> None:
    if len(normalized_ids) != len(raw_ids) or not raw_ids:
        raise ValueError("normalized_ids and raw_ids must be non-empty and of equal length")
    changed = await tx.conn.fetchval(
        _SUBMIT,
        job_id,
        FINAL if final else SUBMITTED,
        len(raw_ids),
        list(raw_ids),
        list(normalized_ids),
        tx.now,
        carrier,
        *_event_args(events),
        tx.node,
    )
    if changed != 1:
        state = await tx.conn.fetchval("SELECT state FROM jobs WHERE job_id = $1", job_id)
        if state is None:
            raise KeyError(f"unknown job {job_id!r}")
        raise ValueError(f"job {job_id!r} is already final")


async def finish(
    tx: PgTx, job_id: str, status: str, events: Sequence[OutboxEvent], code: str | None
) -> bool:
    done = await tx.conn.fetchval(
        "UPDATE jobs SET state = 4, status = $2, error_code = $3, done_at = $4, owner = NULL,"
        " held_until = NULL WHERE job_id = $1 AND state < 4 RETURNING 1",
        job_id,
        status,
        code,
        tx.now,
    )
    if done is None:
        return False
    await _add_events(tx, events)
    return True


async def job(tx: PgTx, job_id: str, *, lock: bool = False) -> JobView | None:
    query = f"SELECT {VIEW_COLUMNS} FROM jobs WHERE job_id = $1"
    row = await tx.conn.fetchrow(query + (" FOR UPDATE" if lock else ""), job_id)
    return None if row is None else _view_from_row(tuple(row))


#: What a cancel may end: a job waiting in its lane or held.
_CANCELLABLE = frozenset((JobState.QUEUED.label, JobState.HELD.label))


async def cancel_queued(
    tx: PgTx, job_id: str, make_events: EventMaker
) -> tuple[JobView | None, bool]:
    """A job waiting in its lane or held (never one being sent) ends ``cancelled``; the
    row lock keeps a release by another gateway from sending it meanwhile."""
    view = await job(tx, job_id, lock=True)
    if view is None or view.state not in _CANCELLABLE:
        return view, False
    await tx.conn.execute(
        "UPDATE jobs SET state = 4, status = 'cancelled', done_at = $2, held_until = NULL"
        " WHERE job_id = $1",
        job_id,
        tx.now,
    )
    view.state, view.status, view.done_at = JobState.FINAL.label, "cancelled", tx.now
    await _add_events(tx, make_events(view, "cancelled"))
    return view, True


async def requeue_unknown(tx: PgTx, job_id: str) -> tuple[JobView | None, bool]:
    view = await job(tx, job_id, lock=True)
    if view is None or (view.status, view.error_code) != ("failed", "unknown_outcome"):
        return view, False
    has_text = await tx.conn.fetchval("SELECT text IS NOT NULL FROM jobs WHERE job_id = $1", job_id)
    if not has_text or view.carrier is None:
        return view, False
    await tx.conn.execute(
        "UPDATE jobs SET state = 0, status = NULL, error_code = NULL, done_at = NULL,"
        " next_attempt = 0, owner = NULL WHERE job_id = $1",
        job_id,
    )
    view.state, view.status, view.error_code, view.done_at = "queued", None, None, None
    return view, True


async def list_jobs(
    tx: PgTx, carrier: str | None, state: int | None, lane: int | None, limit: int
) -> list[JobView]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("carrier", carrier), ("state", state), ("lane", lane)):
        if value is not None:
            params.append(value)
            where.append(f"{column} = ${len(params)}")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    params.append(limit)
    rows = await tx.conn.fetch(
        f"SELECT {VIEW_COLUMNS} FROM jobs{clause} ORDER BY seq DESC LIMIT ${len(params)}",
        *params,
    )
    return [_view_from_row(tuple(row)) for row in rows]


# -- receipts ---------------------------------------------------------------------------
async def lookup(tx: PgTx, carrier: str, normalized_id: str) -> tuple[str, int, int] | None:
    row = await tx.conn.fetchrow(
        "SELECT job_id, part, parts FROM msgids WHERE carrier = $1 AND normalized_id = $2",
        carrier,
        normalized_id,
    )
    return None if row is None else (row[0], row[1], row[2])


async def apply_receipt(
    tx: PgTx, job_id: str, part: int, state: str, make_events: EventMaker
) -> str | None:
    """The job's row is locked first: two gateways applying two parts' receipts at once
    would otherwise each miss the other's part."""
    view = await job(tx, job_id, lock=True)
    if view is None or not 0 <= part < view.parts:
        return None
    view.part_states[part] = state
    status = job_status(view.part_states) if view.state == JobState.SUBMITTED.label else None
    if status is None:
        await tx.conn.execute(
            "UPDATE jobs SET part_states[$2] = $3 WHERE job_id = $1", job_id, part + 1, state
        )
        return None
    await tx.conn.execute(
        "UPDATE jobs SET part_states[$2] = $3, state = 4, status = $4, done_at = $5"
        " WHERE job_id = $1",
        job_id,
        part + 1,
        state,
        status,
        tx.now,
    )
    view.state, view.status, view.done_at = STATE_LABELS[FINAL], status, tx.now
    await _add_events(tx, make_events(view, status))
    return status


# -- outbox -----------------------------------------------------------------------------
async def add_events(tx: PgTx, events: Sequence[OutboxEvent]) -> list[int]:
    return await _add_events(tx, events)


async def pending_events(tx: PgTx, limit: int, after_id: int) -> list[OutboxEvent]:
    """This node's events (what it wrote, and what it took over from a dead node)."""
    rows = await tx.conn.fetch(
        "SELECT event_id, topic, payload, correlation_data FROM outbox"
        " WHERE owner = $1 AND event_id > $2 ORDER BY event_id LIMIT $3",
        tx.node,
        after_id,
        limit,
    )
    return [OutboxEvent(r[1], r[2], r[3], int(r[0])) for r in rows]


async def ack_events(tx: PgTx, event_ids: Sequence[int]) -> int:
    result = await tx.conn.execute(
        "DELETE FROM outbox WHERE event_id = ANY($1::bigint[])", list(event_ids)
    )
    return _count(result)


async def set_aside(tx: PgTx, reasons: Sequence[tuple[int, str]]) -> int:
    if not reasons:
        return 0
    moved = await tx.conn.fetchval(
        """
        WITH r AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS r(id, reason)),
        m AS (DELETE FROM outbox o USING r WHERE o.event_id = r.id
              RETURNING o.event_id, o.topic, o.payload, o.correlation_data, r.reason),
        i AS (INSERT INTO dead_events (event_id, topic, payload, correlation_data, reason,
              dead_at) SELECT event_id, topic, payload, correlation_data, reason, $3 FROM m
              ON CONFLICT (event_id) DO NOTHING RETURNING 1)
        SELECT count(*) FROM i
        """,
        [event_id for event_id, _ in reasons],
        [reason for _, reason in reasons],
        tx.now,
    )
    return int(moved)


async def dead_events(tx: PgTx, limit: int) -> list[DeadEvent]:
    rows = await tx.conn.fetch(
        "SELECT event_id, topic, payload, correlation_data, reason, dead_at FROM dead_events"
        " ORDER BY dead_at DESC, event_id DESC LIMIT $1",
        limit,
    )
    return [DeadEvent(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]


async def purge_dead_events(tx: PgTx, older_than: float) -> int:
    return _count(await tx.conn.execute("DELETE FROM dead_events WHERE dead_at < $1", older_than))


async def count_dead_events(tx: PgTx) -> int:
    return int(await tx.conn.fetchval("SELECT count(*) FROM dead_events"))


# -- start-up, leases and housekeeping --------------------------------------------------
_NOW = "extract(epoch from clock_timestamp())"


async def renew_lease(tx: PgTx, lease: float) -> None:
    """This node's lease, on the database's clock (gateways' clocks may differ)."""
    await tx.conn.execute(
        f"INSERT INTO nodes (node_id, lease_until, started_at) VALUES ($1, {_NOW} + $2, {_NOW})"
        " ON CONFLICT (node_id) DO UPDATE SET lease_until = excluded.lease_until",
        tx.node,
        lease,
    )


_TAKE_BIND = f"""
    INSERT INTO bind_slots AS b (carrier, slot, node)
    SELECT $1, s, $3 FROM generate_series(0, $2 - 1) AS s
    WHERE NOT EXISTS (
        SELECT 1 FROM bind_slots o JOIN nodes n ON n.node_id = o.node
        WHERE o.carrier = $1 AND o.slot = s AND n.lease_until >= {_NOW})
    ORDER BY s LIMIT 1
    ON CONFLICT (carrier, slot) DO UPDATE SET node = excluded.node
    WHERE NOT EXISTS (
        SELECT 1 FROM nodes n WHERE n.node_id = b.node AND n.lease_until >= {_NOW})
    RETURNING slot
"""


async def acquire_bind(tx: PgTx, carrier: str, max_binds: int) -> int | None:
    """A free bind slot of ``carrier``'s account for this node, or None when all
    ``max_binds`` are held by live nodes.

    Nodes taking a slot of one account queue on a transaction-scoped advisory lock: without
    it two nodes read the same free slot in their snapshots, one inserts it, and the other's
    ``ON CONFLICT ... WHERE`` re-check (rightly) refuses to take a live node's slot, so it
    got nothing although another slot was free. Under READ COMMITTED the INSERT that runs
    after the lock sees the previous holder's committed row and picks the next slot. The
    unique key and the re-check stay as the last line of defence."""
    await tx.conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"smppgw-bind:{carrier}")
    slot = await tx.conn.fetchval(_TAKE_BIND, carrier, max_binds, tx.node)
    return None if slot is None else int(slot)


async def release_bind(tx: PgTx, carrier: str, slot: int) -> None:
    await tx.conn.execute(
        "DELETE FROM bind_slots WHERE carrier = $1 AND slot = $2 AND node = $3",
        carrier,
        slot,
        tx.node,
    )


async def live_nodes(tx: PgTx) -> int:
    return int(await tx.conn.fetchval(f"SELECT count(*) FROM nodes WHERE lease_until >= {_NOW}"))


async def recover(
    tx: PgTx,
    resend_on_timeout: Callable[[str], bool],
    make_events: EventMaker,
    *,
    own: bool = True,
) -> RecoveryReport:
    """Jobs left mid-send by this node's previous run (``own``) and by every node whose
    lease ran out: claimed jobs back to their lanes (their ``seq`` keeps priority and
    arrival order); in-flight ones too under ``resend_on_timeout``, else final
    ``failed`` / ``unknown_outcome`` with their events. A dead node's unpublished events
    become this node's to publish. Row locks (``SKIP LOCKED``) keep two survivors from
    taking the same job; the dead nodes' rows are deleted in the same transaction."""
    dead = [
        row[0]
        for row in await tx.conn.fetch(
            f"SELECT node_id FROM nodes WHERE lease_until < {_NOW} AND node_id <> $1"
            " FOR UPDATE SKIP LOCKED",
            tx.node,
        )
    ]
    owners = [*dead, tx.node] if own else dead
    if own:  # binds of this node's previous run (it is starting: it holds none yet)
        await tx.conn.execute("DELETE FROM bind_slots WHERE node = $1", tx.node)
    rows = await tx.conn.fetch(
        "SELECT job_id, carrier, state FROM jobs WHERE state IN (1, 2)"
        " AND owner = ANY($1::text[]) ORDER BY seq FOR UPDATE SKIP LOCKED",
        owners,
    )
    requeue: list[str] = []
    failed: list[str] = []
    requeued = resent = 0
    for job_id, carrier, state in rows:
        if state == SENDING or resend_on_timeout(carrier):
            requeue.append(job_id)
            requeued += state == SENDING
            resent += state != SENDING
        else:
            failed.append(job_id)
    if requeue:
        await tx.conn.execute(
            "UPDATE jobs SET state = 0, owner = NULL WHERE job_id = ANY($1::text[])", requeue
        )
    if failed:
        await tx.conn.execute(
            "UPDATE jobs SET state = 4, status = 'failed', error_code = 'unknown_outcome',"
            " done_at = $2, owner = NULL WHERE job_id = ANY($1::text[])",
            failed,
            tx.now,
        )
        for job_id in failed:
            view = await job(tx, job_id)
            assert view is not None
            await _add_events(tx, make_events(view, "failed"))
    if dead:
        await tx.conn.execute(
            "UPDATE outbox SET owner = $1 WHERE owner = ANY($2::text[])", tx.node, dead
        )
        await tx.conn.execute("DELETE FROM nodes WHERE node_id = ANY($1::text[])", dead)
    return RecoveryReport(requeued=requeued, resent=resent, failed=failed)


async def purge_some(tx: PgTx, older_than: float, limit: int) -> int:
    return int(
        await tx.conn.fetchval(
            """
            WITH d AS (
                DELETE FROM jobs WHERE seq IN (
                    SELECT seq FROM jobs WHERE done_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
                RETURNING job_id, carrier, norm_ids
            ), m AS (
                DELETE FROM msgids USING d, unnest(d.norm_ids) AS n(nid)
                WHERE msgids.carrier = d.carrier AND msgids.normalized_id = n.nid
                  AND msgids.job_id = d.job_id
            )
            SELECT count(*) FROM d
            """,
            older_than,
            limit,
        )
    )


async def count_queued(tx: PgTx) -> dict[tuple[str, int], int]:
    rows = await tx.conn.fetch(
        "SELECT carrier, lane, count(*) FROM jobs WHERE state = 0 GROUP BY carrier, lane"
    )
    return {(r[0], int(r[1])): int(r[2]) for r in rows if r[0] is not None}


async def count_outbox(tx: PgTx) -> int:
    """This node's events waiting for the broker (what its drain waits for)."""
    return int(await tx.conn.fetchval("SELECT count(*) FROM outbox WHERE owner = $1", tx.node))


def _count(status: str) -> int:
    """Rows changed, from a command tag such as ``UPDATE 3`` / ``DELETE 0``."""
    return int(status.rsplit(" ", 1)[-1])


# -- merged forms: many concurrent per-job calls, one statement (``PgWriter`` merged) ----
_SUBMIT_MANY = """
    WITH p AS (
        SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::int[]) AS p(j, nid, raw, part)
    ), a AS (
        SELECT j, array_agg(raw ORDER BY part) AS raws, array_agg(nid ORDER BY part) AS nids,
               count(*)::int AS n
        FROM p GROUP BY j
    ), jj AS (
        SELECT * FROM unnest($5::text[], $6::smallint[], $7::text[])
            WITH ORDINALITY AS jj(job_id, st, carrier, j)
    ), u AS (
        UPDATE jobs SET state = jj.st, status = 'submitted', parts = a.n, message_ids = a.raws,
            norm_ids = a.nids, part_states = array_fill(NULL::text, ARRAY[a.n]),
            done_at = $8, owner = NULL
        FROM jj JOIN a ON a.j = jj.j
        WHERE jobs.job_id = jj.job_id AND jobs.state < 4
        RETURNING jj.j AS j, jobs.job_id, jj.carrier, jobs.expect_reply, jobs.destination,
            jobs.response_topic, jobs.correlation_data
    ), w AS (
        INSERT INTO reply_windows (number, job_id, until, response_topic, correlation_data)
        SELECT destination, job_id, $8 + expect_reply, response_topic, correlation_data
        FROM u WHERE expect_reply IS NOT NULL ORDER BY j
    ), m AS (
        INSERT INTO msgids (carrier, normalized_id, job_id, part, parts)
        SELECT u.carrier, p.nid, u.job_id, p.part, a.n FROM u JOIN p ON p.j = u.j
            JOIN a ON a.j = u.j
        ON CONFLICT (carrier, normalized_id) DO UPDATE
            SET job_id = excluded.job_id, part = excluded.part, parts = excluded.parts
    ), e AS (
        INSERT INTO outbox (topic, payload, correlation_data, owner)
        SELECT ev.t, ev.p, ev.c, $13
        FROM unnest($9::int[], $10::text[], $11::bytea[], $12::bytea[])
            WITH ORDINALITY AS ev(j, t, p, c, o)
        JOIN u ON u.j = ev.j ORDER BY ev.o
    )
    SELECT count(*) FROM u
"""


class _Replay(Exception):
    """A merged call met a case only the single form reports precisely (an unknown or
    final job): the writer replays the batch with each operation on its own."""


async def mark_submitted_many(tx: PgTx, items: list[tuple[Any, ...]]) -> list[None]:
    """``mark_submitted`` for several jobs in one statement: ``items`` are its arguments
    (job_id, carrier, normalized_ids, raw_ids, final, events)."""
    part_job: list[int] = []
    nids: list[str] = []
    raws: list[str] = []
    parts: list[int] = []
    ids: list[str] = []
    states: list[int] = []
    carriers: list[str] = []
    ev_job: list[int] = []
    events: list[OutboxEvent] = []
    for j, (job_id, carrier, normalized, raw, final, evs) in enumerate(items, start=1):
        if len(normalized) != len(raw) or not raw or job_id in ids:
            raise _Replay
        ids.append(job_id)
        states.append(FINAL if final else SUBMITTED)
        carriers.append(carrier)
        for part, (nid, raw_id) in enumerate(zip(normalized, raw, strict=True)):
            part_job.append(j)
            nids.append(nid)
            raws.append(raw_id)
            parts.append(part)
        for event in evs:
            ev_job.append(j)
            events.append(event)
    changed = await tx.conn.fetchval(
        _SUBMIT_MANY,
        part_job,
        nids,
        raws,
        parts,
        ids,
        states,
        carriers,
        tx.now,
        ev_job,
        *_event_args(events),
        tx.node,
    )
    if changed != len(items):
        raise _Replay
    return [None] * len(items)


async def lookup_many(tx: PgTx, items: list[tuple[str, str]]) -> list[tuple[str, int, int] | None]:
    """``lookup`` of several (carrier, normalized_id) in one statement."""
    rows = await tx.conn.fetch(
        "SELECT u.o, m.job_id, m.part, m.parts FROM unnest($1::text[], $2::text[])"
        " WITH ORDINALITY AS u(c, n, o) JOIN msgids m ON m.carrier = u.c"
        " AND m.normalized_id = u.n",
        [carrier for carrier, _ in items],
        [nid for _, nid in items],
    )
    found: list[tuple[str, int, int] | None] = [None] * len(items)
    for row in rows:
        found[int(row[0]) - 1] = (row[1], row[2], row[3])
    return found


async def apply_receipt_many(tx: PgTx, items: list[tuple[Any, ...]]) -> list[str | None]:
    """``apply_receipt`` for several receipts: the jobs read (and locked) in one
    statement, the receipts applied in order in memory (two parts of one job in the same
    batch see each other), the jobs written in one statement, the events in one."""
    rows = await tx.conn.fetch(
        f"SELECT {VIEW_COLUMNS} FROM jobs WHERE job_id = ANY($1::text[]) FOR UPDATE",
        list({item[0] for item in items}),
    )
    views = {row[0]: _view_from_row(tuple(row)) for row in rows}
    changed: dict[str, JobView] = {}
    finals: dict[str, str] = {}
    events: list[OutboxEvent] = []
    results: list[str | None] = []
    for job_id, part, state, make_events in items:
        view = views.get(job_id)
        if view is None or not 0 <= part < view.parts:
            results.append(None)
            continue
        view.part_states[part] = state
        changed[job_id] = view
        status = job_status(view.part_states) if view.state == JobState.SUBMITTED.label else None
        if status is None:
            results.append(None)
            continue
        view.state, view.status, view.done_at = STATE_LABELS[FINAL], status, tx.now
        finals[job_id] = status
        events.extend(make_events(view, status))
        results.append(status)
    if changed:
        await tx.conn.execute(
            """
            UPDATE jobs j SET part_states = u.ps,
                state = CASE WHEN u.status IS NULL THEN j.state ELSE 4 END,
                status = coalesce(u.status, j.status),
                done_at = CASE WHEN u.status IS NULL THEN j.done_at ELSE $4 END
            FROM (SELECT id, status, ARRAY(
                      SELECT x FROM json_array_elements_text(ps::json) WITH ORDINALITY AS t(x, o)
                      ORDER BY o) AS ps
                  FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, ps, status)) u
            WHERE j.job_id = u.id
            """,
            list(changed),
            [json.dumps(view.part_states) for view in changed.values()],
            [finals.get(job_id) for job_id in changed],
            tx.now,
        )
    await _add_events(tx, events)
    return results


async def mark_in_flight_many(tx: PgTx, items: list[list[str]]) -> list[None]:
    """``mark_in_flight`` of several calls' jobs in one statement."""
    await mark_in_flight(tx, [job_id for ids in items for job_id in ids])
    return [None] * len(items)
