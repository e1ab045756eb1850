"""The store's side of failover: moving a job to another carrier, and the ported numbers.

Plain functions of a transaction, like :mod:`smppgw.store.ops` (run in the writer thread
inside a batch's transaction, or by ``smppgw routes`` on its own connection). Kept apart
from the queue operations so that the failover feature reads as one piece.

A move keeps the job's ``seq`` (arrival order) and ``lane``: on the new carrier it is
claimed in the same order as if it had been routed there in the first place, and it
counts against that carrier's tps like any of its jobs (docs/architecture.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from smppgw.store.writer import Tx

#: ``pick(chain, attempts, current)``: the carrier a job goes to next, or None (it stays).
Picker = Callable[[tuple[str, ...], tuple[tuple[str, str], ...], str], "str | None"]

#: ``ported.source`` values.
LEARNED = "learned"
FILE = "file"
IMPORTED = "import"


def encode_chain(chain: Sequence[str]) -> str | None:
    return json.dumps(list(chain)) if chain else None


def decode_chain(text: str | None) -> tuple[str, ...]:
    return tuple(json.loads(text)) if text else ()


def encode_attempts(attempts: Sequence[tuple[str, str]]) -> str | None:
    return json.dumps([list(a) for a in attempts]) if attempts else None


def decode_attempts(text: str | None) -> tuple[tuple[str, str], ...]:
    return tuple((str(c), str(e)) for c, e in json.loads(text)) if text else ()


@dataclass(slots=True, frozen=True)
class Move:
    """One job moved: for metrics and logs."""

    job_id: str
    to: str
    lane: int


def move_job(tx: Tx, job_id: str, carrier: str, to: str, error: str) -> bool:
    """A claimed (``sending`` / ``in_flight``) job of ``carrier`` whose outcome there is
    known (refused, retries exhausted, never written) goes to ``to``'s queue with
    ``(carrier, error)`` added to its attempts. False, nothing written, when the job is no
    longer claimed by ``carrier``."""
    row = tx.conn.execute(
        "SELECT seq, lane, attempts FROM jobs WHERE job_id = ? AND carrier = ? AND state IN (1, 2)",
        (job_id, carrier),
    ).fetchone()
    if row is None:
        return False
    seq, lane, attempts = row
    _move(tx, seq, lane, to, (*decode_attempts(attempts), (carrier, error)))
    return True


def move_queued(
    tx: Tx, carrier: str, max_lane: int, pick: Picker, error: str, limit: int
) -> list[Move]:
    """Queued jobs of ``carrier`` in lanes up to ``max_lane`` that have a chain go where
    ``pick`` says (a job it answers None for stays), lane by lane in arrival order, at
    most ``limit`` looked at."""
    rows = tx.conn.execute(
        "SELECT seq, job_id, lane, chain, attempts FROM jobs WHERE carrier = ? AND state = 0"
        " AND lane <= ? AND chain IS NOT NULL ORDER BY lane, seq LIMIT ?",
        (carrier, max_lane, limit),
    ).fetchall()
    moves: list[Move] = []
    for seq, job_id, lane, chain, attempts in rows:
        tried = decode_attempts(attempts)
        to = pick(decode_chain(chain), tried, carrier)
        if to is None:
            continue
        tx.depth[(carrier, lane)] -= 1
        _move(tx, seq, lane, to, (*tried, (carrier, error)))
        moves.append(Move(job_id, to, lane))
    return moves


def _move(tx: Tx, seq: int, lane: int, to: str, attempts: Sequence[tuple[str, str]]) -> None:
    tx.conn.execute(
        "UPDATE jobs SET carrier = ?, state = 0, attempt = 0, next_attempt = 0, attempts = ?"
        " WHERE seq = ?",
        (to, encode_attempts(attempts), seq),
    )
    tx.depth[(to, lane)] += 1


# -- ported numbers ----------------------------------------------------------------------
@dataclass(slots=True, frozen=True)
class Ported:
    """One number → carrier mapping."""

    number: str
    carrier: str
    source: str
    changed_at: float
    #: None: until replaced or forgotten.
    expires_at: float | None


@dataclass(slots=True, frozen=True)
class ImportReport:
    """What an import changed."""

    added: int
    changed: int
    unchanged: int
    #: Rows of the same source no longer in the list (``ported_file`` reloads only).
    removed: int


_LOOKUP = "SELECT carrier FROM ported WHERE number = ? AND (expires_at IS NULL OR expires_at > ?)"


def ported_carrier(conn: Any, number: str, now: float) -> str | None:
    """The carrier ``number`` was ported to, unless unknown or expired (any connection)."""
    row = conn.execute(_LOOKUP, (number, now)).fetchone()
    return None if row is None else str(row[0])


def learn(tx: Tx, number: str, carrier: str, ttl: float) -> None:
    """Remember ``number`` → ``carrier`` for ``ttl`` seconds (newer evidence replaces any
    mapping, an operator's included)."""
    tx.conn.execute(
        "INSERT OR REPLACE INTO ported (number, carrier, source, changed_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (number, carrier, LEARNED, tx.now, tx.now + ttl),
    )


def forget(tx: Tx, number: str) -> Ported | None:
    """Delete ``number``'s mapping; returns what was there."""
    row = tx.conn.execute(
        "DELETE FROM ported WHERE number = ?"
        " RETURNING number, carrier, source, changed_at, expires_at",
        (number,),
    ).fetchone()
    return None if row is None else Ported(*row)


def get(tx: Tx, number: str) -> Ported | None:
    row = tx.conn.execute(
        "SELECT number, carrier, source, changed_at, expires_at FROM ported WHERE number = ?",
        (number,),
    ).fetchone()
    return None if row is None else Ported(*row)


def list_ported(tx: Tx, limit: int) -> list[Ported]:
    rows = tx.conn.execute(
        "SELECT number, carrier, source, changed_at, expires_at FROM ported"
        " ORDER BY number LIMIT ?",
        (limit,),
    ).fetchall()
    return [Ported(*row) for row in rows]


def import_ported(
    tx: Tx, entries: Iterable[tuple[str, str]], source: str, *, replace_source: bool
) -> ImportReport:
    """Set each (number, carrier), with no expiry, in this one transaction.
    ``replace_source``: rows of ``source`` not in ``entries`` are deleted (the list is the
    whole truth: ``routing.ported_file``)."""
    execute = tx.conn.execute
    added = changed = unchanged = 0
    seen: set[str] = set()
    for number, carrier in entries:
        seen.add(number)
        row = execute(
            "SELECT carrier, source, expires_at FROM ported WHERE number = ?", (number,)
        ).fetchone()
        if row is not None and tuple(row) == (carrier, source, None):
            unchanged += 1
            continue
        if row is None:
            added += 1
        else:
            changed += 1
        execute(
            "INSERT OR REPLACE INTO ported (number, carrier, source, changed_at, expires_at)"
            " VALUES (?, ?, ?, ?, NULL)",
            (number, carrier, source, tx.now),
        )
    removed = 0
    if replace_source:
        stale = [
            number
            for (number,) in execute("SELECT number FROM ported WHERE source = ?", (source,))
            if number not in seen
        ]
        for number in stale:
            execute("DELETE FROM ported WHERE number = ?", (number,))
        removed = len(stale)
    return ImportReport(added, changed, unchanged, removed)


def count_ported(tx: Tx) -> int:
    """Mappings in use (not expired)."""
    row = tx.conn.execute(
        "SELECT count(*) FROM ported WHERE expires_at IS NULL OR expires_at > ?", (tx.now,)
    ).fetchone()
    return int(row[0])


def purge_ported(tx: Tx) -> int:
    """Delete expired learned mappings."""
    return int(
        tx.conn.execute(
            "DELETE FROM ported WHERE expires_at IS NOT NULL AND expires_at <= ?", (tx.now,)
        ).rowcount
    )
