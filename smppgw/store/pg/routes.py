"""The store's side of failover on PostgreSQL: moving a job to another carrier, and the
ported numbers every gateway of the cluster shares.

Same contract as :mod:`smppgw.store.routes` (the SQLite functions; their docstrings
hold), as ``async fn(tx, ...)`` run by ``PgWriter`` inside a batch's transaction or by
``smppgw routes`` on its own connection. The result types (``Move``, ``Ported``,
``ImportReport``) and the JSON encoding of ``chain`` / ``attempts`` are SQLite's, so
callers see no difference. What differs, for the cluster:

* a move is one statement that appends to ``attempts`` in the database (no read, no
  window for another gateway's write between a read and the update), and a claimed job
  moves only while this gateway (``tx.node``) still owns it;
* ``move_queued`` locks the rows it looks at (``FOR UPDATE SKIP LOCKED``): a job another
  gateway is claiming at that moment is left to that claim;
* ``import_ported`` is one statement for the whole list (``unnest`` arrays in, the counts
  out), so a list of a million numbers is one round trip and one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from smppgw.store.pg.ops import _NOW
from smppgw.store.pg.writer import PgTx
from smppgw.store.routes import (
    LEARNED,
    ImportReport,
    Move,
    Picker,
    Ported,
    decode_attempts,
    decode_chain,
)

#: ``attempts`` with one more ``[carrier, error]`` (``$carrier``, ``$error`` given).
_APPEND = (
    "coalesce({col}, '[]'::jsonb) || jsonb_build_array(jsonb_build_array({carrier}::text,"
    " {error}::text))"
)
# ``state + 0``: see the jobs_active index in smppgw.store.pg.schema.
_MOVE_JOB = f"""
    UPDATE jobs SET carrier = $3, state = 0, attempt = 0, next_attempt = 0, owner = NULL,
        attempts = {_APPEND.format(col="attempts", carrier="$2", error="$4")}
    WHERE job_id = $1 AND carrier = $2 AND state + 0 IN (1, 2) AND owner = $5
"""
_QUEUED_WITH_CHAIN = """
    SELECT seq, job_id, lane, chain, attempts FROM jobs
    WHERE carrier = $1 AND state = 0 AND lane <= $2 AND chain IS NOT NULL
    ORDER BY lane, seq LIMIT $3
    FOR UPDATE SKIP LOCKED
"""
_MOVE_QUEUED = f"""
    UPDATE jobs j SET carrier = u.t, attempt = 0, next_attempt = 0,
        attempts = {_APPEND.format(col="j.attempts", carrier="$1", error="$2")}
    FROM unnest($3::bigint[], $4::text[]) AS u(s, t)
    WHERE j.seq = u.s
"""
_PORTED = "number, carrier, source, changed_at, expires_at"
_LOOKUP_MANY = """
    SELECT u.o, p.carrier FROM unnest($1::text[]) WITH ORDINALITY AS u(n, o)
    JOIN ported p ON p.number = u.n AND (p.expires_at IS NULL OR p.expires_at > $2)
"""
_UPSERT = """
    INSERT INTO ported (number, carrier, source, changed_at, expires_at)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (number) DO UPDATE SET carrier = excluded.carrier, source = excluded.source,
        changed_at = excluded.changed_at, expires_at = excluded.expires_at
"""
#: The whole list in one statement: the rows as they were (``old``), the upsert of those
#: that differ, the delete of the source's rows no longer listed (``$5``), the counts.
#: A number listed twice keeps its last entry, like SQLite's loop.
_IMPORT = """
    WITH u AS (
        SELECT DISTINCT ON (n) n, c
        FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(n, c, o)
        ORDER BY n, o DESC
    ), old AS (
        SELECT p.number,
            (p.carrier = u.c AND p.source = $3 AND p.expires_at IS NULL) AS same
        FROM ported p JOIN u ON p.number = u.n
    ), up AS (
        INSERT INTO ported (number, carrier, source, changed_at, expires_at)
        SELECT u.n, u.c, $3, $4, NULL FROM u LEFT JOIN old ON old.number = u.n
        WHERE old.same IS NOT TRUE
        ON CONFLICT (number) DO UPDATE SET carrier = excluded.carrier,
            source = excluded.source, changed_at = excluded.changed_at, expires_at = NULL
        RETURNING number
    ), gone AS (
        DELETE FROM ported p
        WHERE $5 AND p.source = $3 AND NOT EXISTS (SELECT 1 FROM u WHERE u.n = p.number)
        RETURNING p.number
    )
    SELECT (SELECT count(*) FROM u) - (SELECT count(*) FROM old),
        (SELECT count(*) FROM old WHERE NOT same),
        (SELECT count(*) FROM old WHERE same),
        (SELECT count(*) FROM gone),
        (SELECT count(*) FROM up)
"""


def _ported(row: Any) -> Ported:
    return Ported(*tuple(row))


# -- moves ------------------------------------------------------------------------------
async def move_job(tx: PgTx, job_id: str, carrier: str, to: str, error: str) -> bool:
    """:func:`smppgw.store.routes.move_job`; also False when this gateway no longer owns
    the job (another took it over after this one's lease ran out)."""
    status = await tx.conn.execute(_MOVE_JOB, job_id, carrier, to, error, tx.node)
    return bool(status == "UPDATE 1")


async def move_queued(
    tx: PgTx, carrier: str, max_lane: int, pick: Picker, error: str, limit: int
) -> list[Move]:
    """:func:`smppgw.store.routes.move_queued`: rows locked and read in one statement,
    ``pick`` in memory, the moves written in one statement."""
    rows = await tx.conn.fetch(_QUEUED_WITH_CHAIN, carrier, max_lane, limit)
    moves: list[Move] = []
    seqs: list[int] = []
    for seq, job_id, lane, chain, attempts in rows:
        to = pick(decode_chain(chain), decode_attempts(attempts), carrier)
        if to is None:
            continue
        seqs.append(seq)
        moves.append(Move(job_id, to, lane))
    if moves:
        await tx.conn.execute(_MOVE_QUEUED, carrier, error, seqs, [m.to for m in moves])
    return moves


# -- carriers up across the cluster -----------------------------------------------------
async def set_carrier_up(tx: PgTx, carrier: str, up: bool) -> None:
    """Record whether this gateway has ``carrier`` usable (a bind up, not paused)."""
    if up:
        await tx.conn.execute(
            "INSERT INTO carrier_up (carrier, node) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            carrier,
            tx.node,
        )
    else:
        await tx.conn.execute(
            "DELETE FROM carrier_up WHERE carrier = $1 AND node = $2", carrier, tx.node
        )


async def carrier_up_elsewhere(tx: PgTx, carrier: str) -> bool:
    """Another gateway whose lease is fresh has ``carrier`` usable (a stopped or dead
    gateway's rows count until its lease runs out: ``store.lease``)."""
    return bool(
        await tx.conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM carrier_up c JOIN nodes n ON n.node_id = c.node"
            f" WHERE c.carrier = $1 AND c.node <> $2 AND n.lease_until >= {_NOW})",
            carrier,
            tx.node,
        )
    )


# -- ported numbers ---------------------------------------------------------------------
async def ported_carriers(tx: PgTx, numbers: Sequence[str]) -> list[str | None]:
    """The carrier each number was ported to (None: unknown or expired), in order: the
    intake's lookups of one writer batch, one statement."""
    found: list[str | None] = [None] * len(numbers)
    for row in await tx.conn.fetch(_LOOKUP_MANY, list(numbers), tx.now):
        found[int(row[0]) - 1] = str(row[1])
    return found


async def ported_carrier(tx: PgTx, number: str) -> str | None:
    (carrier,) = await ported_carriers(tx, [number])
    return carrier


async def learn(tx: PgTx, number: str, carrier: str, ttl: float) -> None:
    await tx.conn.execute(_UPSERT, number, carrier, LEARNED, tx.now, tx.now + ttl)


async def forget(tx: PgTx, number: str) -> Ported | None:
    row = await tx.conn.fetchrow(
        f"DELETE FROM ported WHERE number = $1 RETURNING {_PORTED}", number
    )
    return None if row is None else _ported(row)


async def get(tx: PgTx, number: str) -> Ported | None:
    row = await tx.conn.fetchrow(f"SELECT {_PORTED} FROM ported WHERE number = $1", number)
    return None if row is None else _ported(row)


async def list_ported(tx: PgTx, limit: int) -> list[Ported]:
    rows = await tx.conn.fetch(f"SELECT {_PORTED} FROM ported ORDER BY number LIMIT $1", limit)
    return [_ported(row) for row in rows]


async def import_ported(
    tx: PgTx, entries: Sequence[tuple[str, str]], source: str, *, replace_source: bool
) -> ImportReport:
    """:func:`smppgw.store.routes.import_ported` in one statement."""
    row = await tx.conn.fetchrow(
        _IMPORT,
        [number for number, _ in entries],
        [carrier for _, carrier in entries],
        source,
        tx.now,
        replace_source,
    )
    added, changed, unchanged, removed, _ = (int(value) for value in row)
    return ImportReport(added, changed, unchanged, removed)


async def count_ported(tx: PgTx) -> int:
    """Mappings in use (not expired)."""
    value = await tx.conn.fetchval(
        "SELECT count(*) FROM ported WHERE expires_at IS NULL OR expires_at > $1", tx.now
    )
    return int(value)


async def purge_ported(tx: PgTx) -> int:
    """Delete expired learned mappings."""
    status = await tx.conn.execute(
        "DELETE FROM ported WHERE expires_at IS NOT NULL AND expires_at <= $1", tx.now
    )
    return int(status.split()[-1])
