"""Consent and the marketing gate in PostgreSQL (issue 14), shared by every gateway.

Same contract as the SQLite functions of the same names in ``smppgw.store.ops``. What the
cluster adds is the marketing cap (``consent.marketing_daily_cap`` in a rolling 24 h per
number) holding across gateways: two gateways taking a marketing job to one number at
the same moment would each read "two sends so far" and both take a fourth. So the
transaction that decides takes a transaction-scoped advisory lock on the number first
(``pg_advisory_xact_lock``: numbers in sorted order, so two batches cannot deadlock on
each other); the second waits for the first's COMMIT, then reads its send (READ
COMMITTED: each statement sees what committed before it started). The lock also covers
the release check of a held marketing job, so a release and an intake cannot both take
the last send either.

``smppgw consent`` changes many numbers in one statement per chunk (``unnest`` in, the
consent rows, their ``sms/consent`` events and the change count written together).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from smppgw.pipeline.marketing import DAY, Go, Hold, MarketingGate, NumberState, Reject
from smppgw.store.model import (
    ConsentChange,
    ConsentRecord,
    OutboxEvent,
    ReplyWindow,
    StoredJob,
    Usage,
)
from smppgw.store.ops import Admission, HoldMaker
from smppgw.store.pg.holds import add_mo
from smppgw.store.pg.ops import _NOW, _add_events, _count, add_counted, add_jobs
from smppgw.store.pg.writer import PgTx

#: First key of the per-number advisory locks ("cons" in ASCII); the second is the
#: number's ``hashtext``. A hash collision only makes two numbers wait for each other.
CONSENT_LOCK = 0x636F6E73
#: Numbers per statement of ``set_opted_out`` (an import of 100,000: ten round trips).
CHUNK = 10_000


async def lock_numbers(tx: PgTx, numbers: Sequence[str]) -> None:
    """Hold each number's marketing lock until this transaction ends (sorted order)."""
    if numbers:
        await tx.conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(n))"
            " FROM (SELECT DISTINCT n FROM unnest($2::text[]) AS u(n) ORDER BY n) AS s",
            CONSENT_LOCK,
            sorted(set(numbers)),
        )


async def number_state(tx: PgTx, number: str, now: float, leave_out: str = "") -> NumberState:
    """Whether ``number`` opted out, and its marketing sends counted in the last 24 h
    (but the job ``leave_out``'s own). Call it under the number's lock."""
    row = await tx.conn.fetchrow(
        "SELECT (SELECT opted_out FROM consent WHERE number = $1),"
        " ARRAY(SELECT at FROM marketing_sends WHERE number = $1 AND at > $2 AND job_id <> $3)",
        number,
        now - DAY,
        leave_out,
    )
    return NumberState(opted_out=bool(row[0]), sends=list(row[1]))


async def _known(tx: PgTx, job_id: str) -> bool:
    return await tx.conn.fetchval("SELECT 1 FROM jobs WHERE job_id = $1", job_id) is not None


async def _count_send(tx: PgTx, job_id: str, number: str, at: float) -> None:
    await tx.conn.execute(
        "INSERT INTO marketing_sends (job_id, number, at) VALUES ($1, $2, $3)"
        " ON CONFLICT (job_id) DO UPDATE SET number = excluded.number, at = excluded.at",
        job_id,
        number,
        at,
    )


async def add_admitted(
    tx: PgTx,
    jobs: Sequence[StoredJob],
    usage: Sequence[Usage | None],
    gate: MarketingGate | None,
    hold: HoldMaker | None = None,
) -> list[Admission]:
    """``smppgw.store.ops.add_admitted`` on PostgreSQL: the tenant quota as ``add_counted``
    checks it (a row lock on the tenant's day), each marketing job decided by ``gate``
    under its number's lock and counted in ``marketing_sends`` before the lock is let go
    (at COMMIT)."""
    if gate is not None:
        await lock_numbers(tx, [j.destination for j in jobs if j.category == "marketing"])
    result: list[Admission] = []
    for job, use in zip(jobs, usage, strict=True):
        marketing = job.category == "marketing" and gate is not None
        #: Held for its own send_at already: decided when it comes due.
        later = job.held_until is not None
        decision: Go | Hold | Reject | None = None
        if marketing:
            assert gate is not None
            if await _known(tx, job.job_id):
                result.append(False)
                continue
            if not later:
                decision = gate.decide(await number_state(tx, job.destination, tx.now), tx.now)
            if isinstance(decision, Reject):
                result.append(decision)
                continue
        if isinstance(decision, Hold) and hold is not None:
            job = hold(job, decision.until, decision.reason)
        (new,) = await add_counted(tx, (job,), (use,))
        if not new or not marketing:
            result.append(new)
            continue
        at = tx.now
        if isinstance(decision, Hold):
            at = decision.until
            if hold is None:
                await tx.conn.execute(
                    "UPDATE jobs SET next_attempt = $2 WHERE job_id = $1", job.job_id, at
                )
        elif later and job.send_at is not None:
            at = job.send_at
        await _count_send(tx, job.job_id, job.destination, at)
        result.append(decision if isinstance(decision, Hold) else True)
    return result


async def marketing_release(
    tx: PgTx, job_id: str, gate: MarketingGate, now: float
) -> Go | Hold | Reject | None:
    """Decide again, at its release, a held job (None: no marketing job), under its
    number's lock: its own counted send left out, then counted at its new time (Go: now,
    Hold: the new release time) or forgotten (Reject)."""
    number = await tx.conn.fetchval("SELECT number FROM marketing_sends WHERE job_id = $1", job_id)
    if number is None:
        return None
    await lock_numbers(tx, [number])
    decision = gate.decide(await number_state(tx, number, now, leave_out=job_id), now)
    if isinstance(decision, Reject):
        await tx.conn.execute("DELETE FROM marketing_sends WHERE job_id = $1", job_id)
    else:
        at = decision.until if isinstance(decision, Hold) else now
        await tx.conn.execute("UPDATE marketing_sends SET at = $2 WHERE job_id = $1", job_id, at)
    return decision


# -- consent changes --------------------------------------------------------------------
_COUNT_CONSENT = (
    "INSERT INTO consent_counts (action, source, changes) VALUES ($1, $2, $3)"
    " ON CONFLICT (action, source) DO UPDATE SET changes = consent_counts.changes"
    " + excluded.changes"
)


async def apply_consent(tx: PgTx, change: ConsentChange) -> bool:
    """Record ``change`` with its events when it changes the number's consent; True when
    it did. The number's row is locked (or, when new, inserted under its lock)."""
    wanted = change.action == "opt_out"
    await lock_numbers(tx, [change.number])
    current = await tx.conn.fetchval(
        "SELECT opted_out FROM consent WHERE number = $1", change.number
    )
    if current is not None and (change.only_if_unknown or current == wanted):
        return False
    await tx.conn.execute(
        "INSERT INTO consent (number, opted_out, keyword, source, carrier, changed_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (number) DO UPDATE SET"
        " opted_out = excluded.opted_out, keyword = excluded.keyword, source = excluded.source,"
        " carrier = excluded.carrier, changed_at = excluded.changed_at",
        change.number,
        wanted,
        change.keyword,
        change.source,
        change.carrier,
        tx.now,
    )
    await tx.conn.execute(_COUNT_CONSENT, change.action, change.source, 1)
    await _add_events(tx, change.events)
    return True


async def record_mo(
    tx: PgTx,
    number: str,
    now: float,
    make_events: Callable[[ReplyWindow | None], list[OutboxEvent]],
    change: ConsentChange | None,
    replies: Sequence[StoredJob],
    reply_on_change: Sequence[StoredJob],
) -> tuple[ReplyWindow | None, bool]:
    """``add_mo`` with its consent change (and events) and reply jobs, one transaction."""
    window = await add_mo(tx, number, now, make_events)
    changed = change is not None and await apply_consent(tx, change)
    await add_jobs(tx, [*replies, *(reply_on_change if changed else ())])
    return window, changed


_SET_OPTED_OUT = """
    WITH i AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[])
            WITH ORDINALITY AS u(number, topic, payload, corr, o)
    ), c AS (
        INSERT INTO consent AS k (number, opted_out, keyword, source, carrier, changed_at)
        SELECT number, $5, NULL, 'admin', NULL, $6 FROM i
        WHERE $5 OR EXISTS (SELECT 1 FROM consent x WHERE x.number = i.number)
        ON CONFLICT (number) DO UPDATE SET opted_out = excluded.opted_out, keyword = NULL,
            source = 'admin', carrier = NULL, changed_at = excluded.changed_at
        WHERE k.opted_out IS DISTINCT FROM excluded.opted_out
        RETURNING number
    ), ch AS (
        SELECT i.* FROM c JOIN i USING (number)
    ), e AS (
        INSERT INTO outbox (topic, payload, correlation_data, owner)
        SELECT topic, payload, corr, $7 FROM ch ORDER BY o
    ), n AS (
        INSERT INTO consent_counts (action, source, changes)
        SELECT $8, 'admin', count(*) FROM ch HAVING count(*) > 0
        ON CONFLICT (action, source) DO UPDATE
            SET changes = consent_counts.changes + excluded.changes
    )
    SELECT number FROM ch ORDER BY o
"""


async def set_opted_out(
    tx: PgTx, numbers: Sequence[str], opted_out: bool, make_events: Callable[[str], OutboxEvent]
) -> list[str]:
    """An operator's change of many numbers (``smppgw consent``): those whose consent it
    changes get a row (source ``admin``) and ``make_events(number)`` (published by the
    node ``tx.node``); returns them. One statement per ``CHUNK`` numbers."""
    unique = list(dict.fromkeys(numbers))
    action = "opt_out" if opted_out else "opt_in"
    changed: list[str] = []
    for start in range(0, len(unique), CHUNK):
        chunk = unique[start : start + CHUNK]
        events = [make_events(number) for number in chunk]
        rows = await tx.conn.fetch(
            _SET_OPTED_OUT,
            chunk,
            [e.topic for e in events],
            [e.payload for e in events],
            [e.correlation_data for e in events],
            opted_out,
            tx.now,
            tx.node,
            action,
        )
        changed.extend(row[0] for row in rows)
    return changed


async def publisher(tx: PgTx, fallback: str) -> str:
    """The node to publish events written outside any gateway (``smppgw consent``): the
    live gateway whose lease runs longest, else ``fallback`` (its own ``cluster.node_id``:
    published when that gateway runs, or by a survivor once it is known dead)."""
    node = await tx.conn.fetchval(
        f"SELECT node_id FROM nodes WHERE lease_until >= {_NOW} ORDER BY lease_until DESC LIMIT 1"
    )
    return str(node) if node is not None else fallback


async def consent_records(tx: PgTx, opted_out_only: bool, limit: int | None) -> list[ConsentRecord]:
    """Numbers with a consent record, newest change first."""
    where = " WHERE opted_out" if opted_out_only else ""
    rows: list[Any] = await tx.conn.fetch(
        "SELECT number, opted_out, keyword, source, carrier, changed_at FROM consent"
        f"{where} ORDER BY changed_at DESC, number LIMIT $1",
        limit,
    )
    return [ConsentRecord(r[0], bool(r[1]), r[2], r[3], r[4], r[5]) for r in rows]


async def consent_counts(tx: PgTx) -> dict[tuple[str, str], int]:
    """(action, source) → consent changes recorded, by any gateway or ``smppgw consent``."""
    rows = await tx.conn.fetch("SELECT action, source, changes FROM consent_counts")
    return {(r[0], r[1]): int(r[2]) for r in rows}


async def purge_marketing_sends(tx: PgTx, older_than: float) -> int:
    """Forget marketing sends the rolling 24 h no longer counts."""
    return _count(await tx.conn.execute("DELETE FROM marketing_sends WHERE at < $1", older_than))
