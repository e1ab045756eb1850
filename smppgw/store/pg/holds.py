"""Held jobs and reply windows in PostgreSQL (issue 14): the operations behind
``smppgw.pipeline.holds.Holds`` and the MO side's reply lookup, for a cluster.

Same contract as the SQLite functions of the same names in ``smppgw.store.ops``. What the
cluster adds: every gateway runs a release timer over the same held jobs, so

- ``due_held`` takes the due jobs it returns: their rows are locked ``FOR UPDATE SKIP
  LOCKED`` and their ``held_until`` pushed ``HOLD_CLAIM`` seconds ahead in the same
  statement, so another gateway's timer neither blocks on them nor sees them due while
  this one decides them (if this gateway dies meanwhile, they come due again after
  ``HOLD_CLAIM``, for a survivor);
- ``release_held`` (and ``hold``) change only a job still held (a conditional UPDATE on
  its state): of two gateways that decided the same job, one moves it, so it is sent once.

Reply windows are shared: the MO that answers a job may reach any gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from smppgw.store.model import OutboxEvent, ReplyWindow, StoredJob
from smppgw.store.pg.ops import _add_events, _count
from smppgw.store.pg.writer import PgTx
from smppgw.store.rows import JOB_COLUMNS, job_from_row

#: Seconds a gateway's ``due_held`` keeps the jobs it returned from the other gateways'
#: timers: far longer than deciding a batch takes, short enough for a survivor to take
#: them over soon after a crash.
HOLD_CLAIM = 60.0

_DUE_HELD = f"""
    WITH c AS (
        SELECT seq, held_until FROM jobs
        WHERE state = -1 AND held_until <= $1
        ORDER BY lane, seq LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs j SET held_until = $1 + $3 FROM c WHERE j.seq = c.seq
    RETURNING {", ".join("j." + c.strip() for c in JOB_COLUMNS.split(","))},
        c.held_until AS was, j.seq
"""


async def held_counts(tx: PgTx) -> dict[str, int]:
    """Held jobs by reason, cluster-wide (the partial index ``jobs_held`` only)."""
    rows = await tx.conn.fetch(
        "SELECT hold_reason, count(*) FROM jobs WHERE state = -1 GROUP BY hold_reason"
    )
    return {(row[0] or ""): int(row[1]) for row in rows}


async def next_held(tx: PgTx) -> float | None:
    """When the earliest held job is due: the first entry of ``jobs_held``."""
    value = await tx.conn.fetchval("SELECT min(held_until) FROM jobs WHERE state = -1")
    return None if value is None else float(value)


async def due_held(tx: PgTx, now: float, limit: int) -> list[StoredJob]:
    """Up to ``limit`` held jobs due at ``now``, most urgent lane first, then arrival;
    still held, but taken from the other gateways' timers for ``HOLD_CLAIM`` seconds
    (each returned with the ``held_until`` it had)."""
    rows = await tx.conn.fetch(_DUE_HELD, now, limit, HOLD_CLAIM)
    rows.sort(key=lambda row: (row["lane"], row["seq"]))
    jobs: list[StoredJob] = []
    for row in rows:
        job = job_from_row(tuple(row))
        job.held_until = row["was"]
        jobs.append(job)
    return jobs


async def hold(
    tx: PgTx,
    job_id: str,
    until: float,
    reason: str,
    events: Sequence[OutboxEvent],
    send_at: float | None = None,
) -> bool:
    """Hold a queued or held job until ``until`` for ``reason``, with ``events``; False,
    nothing written, for a job in any other state (claimed by a gateway, sent, final)."""
    done = await tx.conn.fetchval(
        "UPDATE jobs SET state = -1, held_until = $2, hold_reason = $3,"
        " send_at = coalesce($4, send_at), owner = NULL"
        " WHERE job_id = $1 AND state + 0 IN (-1, 0) RETURNING 1",
        job_id,
        until,
        reason,
        send_at,
    )
    if done is None:
        return False
    await _add_events(tx, events)
    return True


async def release_held(tx: PgTx, job_ids: Sequence[str]) -> list[tuple[str, int]]:
    """Held jobs into their lanes at their place in arrival order (``seq``); the
    (carrier, lane) of each one moved, in ``job_ids`` order. A job no longer held
    (cancelled, or released by another gateway) is skipped: the UPDATE's condition is
    checked again after any concurrent change to the row commits."""
    if not job_ids:
        return []
    rows = await tx.conn.fetch(
        "UPDATE jobs j SET state = 0, held_until = NULL, hold_reason = NULL"
        " FROM unnest($1::text[]) WITH ORDINALITY AS u(id, o)"
        " WHERE j.job_id = u.id AND j.state + 0 = -1 RETURNING u.o, j.carrier, j.lane",
        list(job_ids),
    )
    rows.sort(key=lambda row: row[0])
    return [(row[1], int(row[2])) for row in rows]


# -- replies ----------------------------------------------------------------------------
async def open_reply(tx: PgTx, number: str, now: float) -> ReplyWindow | None:
    """The newest window still open for ``number`` (newest wins), whichever gateway
    submitted its job."""
    row = await tx.conn.fetchrow(
        "SELECT job_id, until, response_topic, correlation_data FROM reply_windows"
        " WHERE number = $1 AND until > $2 ORDER BY window_id DESC LIMIT 1",
        number,
        now,
    )
    if row is None:
        return None
    return ReplyWindow(row[0], number, row[1], row[2], row[3])


async def add_mo(
    tx: PgTx,
    number: str,
    now: float,
    make_events: Callable[[ReplyWindow | None], list[OutboxEvent]],
) -> ReplyWindow | None:
    """An MO from ``number``: its open reply window (if any) and its events, stored in
    one transaction."""
    window = await open_reply(tx, number, now)
    await _add_events(tx, make_events(window))
    return window


async def purge_replies(tx: PgTx, before: float) -> int:
    """Windows closed before ``before`` (the ``reply_windows_until`` index)."""
    return _count(await tx.conn.execute("DELETE FROM reply_windows WHERE until < $1", before))
