"""One group-commit batch on the SQLite connection: what the writer thread and the writer
process (``smppgw.store.worker``) both run, so the two share one definition of it.

A batch first runs without SAVEPOINTs (two statements per operation saved). If an
operation fails on its own (a bad argument, an unknown job), the batch is rolled back and
replayed with each operation inside a SAVEPOINT, so that one is rolled back alone and its
caller gets the error while the rest of the batch commits. Operations are therefore
functions of the database and their arguments: running one twice, the first time rolled
back, must do what running it once does. An environmental error (``database is locked``,
``disk is full``, I/O error) or a failed COMMIT rolls back the whole batch and every
caller in it gets a ``StoreError``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from smppgw.store.model import OutboxEvent, StoreError
from smppgw.store.msgid_rows import MsgidRow, insert_msgids
from smppgw.store.outbox_rows import insert_events

#: One operation's outcome: its value, or the exception its caller gets.
Result = tuple[Any, BaseException | None]


@dataclass(slots=True)
class Tx:
    """What an operation sees: the connection inside an open transaction, plus the
    in-memory counters it changes (applied only if the batch commits)."""

    conn: sqlite3.Connection
    #: Wall-clock time at the start of the batch.
    now: float
    #: (carrier, lane) → change in queued jobs, for this operation.
    depth: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: Change in outbox rows, for this operation.
    outbox: int = 0
    #: hold reason → change in held jobs, for this operation.
    held: Counter[str] = field(default_factory=Counter)
    #: Outbox events the operations added and not inserted yet (:meth:`flush`); None:
    #: each is inserted at once (a ``Tx`` made outside a batch: the commands', the
    #: store's open).
    deferred: list[OutboxEvent] | None = None
    #: Message id mappings of submitted jobs not inserted yet (:meth:`flush`); None: each
    #: is inserted at once.
    msgids: list[MsgidRow] | None = None

    def flush(self) -> None:
        """Insert the events (``smppgw.store.outbox_rows``) and message id mappings
        (``smppgw.store.msgid_rows``) kept so far: before COMMIT, and before an operation
        reads the outbox or ``msgids``, or needs an event's id at once."""
        if self.deferred:
            insert_events(self.conn, self.deferred)
            self.deferred.clear()
        if self.msgids:
            insert_msgids(self.conn, self.msgids)
            self.msgids.clear()

    def add(self, other: Tx) -> None:
        """Fold ``other``'s counter changes into this one (a batch's sum)."""
        self.depth.update(other.depth)
        self.outbox += other.outbox
        self.held.update(other.held)


@dataclass(slots=True)
class Outcome:
    """What a batch did: per operation its result, in order; ``tx`` (the counter changes)
    and ``seconds`` (BEGIN to the end of COMMIT) when it committed, else ``failure``."""

    results: list[Result]
    tx: Tx | None
    seconds: float | None
    failure: Exception | None = None


def run_batch(conn: sqlite3.Connection, fns: Sequence[Callable[[Tx], Any]]) -> Outcome:
    """Run ``fns`` in one transaction and commit; never raises for an operation's or the
    database's error (they are in the outcome)."""
    started = time.perf_counter()
    now = time.time()
    try:
        ran = _run_fast(conn, fns, now)
        if ran is None:  # an operation raised: replay, each in its own SAVEPOINT
            ran = _run_guarded(conn, fns, now)
        tx, results = ran
        conn.execute("COMMIT")
    except Exception as exc:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        error = as_store_error(exc)
        return Outcome([(None, error) for _ in fns], None, None, exc)
    return Outcome(results, tx, time.perf_counter() - started)


def _run_fast(
    conn: sqlite3.Connection, fns: Sequence[Callable[[Tx], Any]], now: float
) -> tuple[Tx, list[Result]] | None:
    """The batch in one transaction without SAVEPOINTs (nearly every batch has no failing
    operation). None, with the transaction rolled back, when an operation raised."""
    conn.execute("BEGIN IMMEDIATE")
    tx = Tx(conn, now, deferred=[], msgids=[])
    results: list[Result] = []
    try:
        for fn in fns:
            results.append((fn(tx), None))
        tx.flush()  # a row the tables refuse: replayed, its operation fails alone
    except (sqlite3.OperationalError, sqlite3.InternalError):
        raise  # the database, not an operation: fail the batch
    except Exception:
        conn.execute("ROLLBACK")
        return None
    return tx, results


def _run_guarded(
    conn: sqlite3.Connection, fns: Sequence[Callable[[Tx], Any]], now: float
) -> tuple[Tx, list[Result]]:
    """The batch with each operation in a SAVEPOINT, so one that fails on its own is
    rolled back alone and its caller gets the error while the rest commits."""
    batch_tx = Tx(conn, now)
    results: list[Result] = []
    conn.execute("BEGIN IMMEDIATE")
    for fn in fns:
        tx = Tx(conn, now, deferred=[], msgids=[])
        conn.execute("SAVEPOINT op")
        try:
            value = fn(tx)
            tx.flush()  # inside the operation's SAVEPOINT: its rows are its own
        except (sqlite3.OperationalError, sqlite3.InternalError):
            raise
        except Exception as exc:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            results.append((None, as_store_error(exc)))
        else:
            conn.execute("RELEASE op")
            batch_tx.add(tx)
            results.append((value, None))
    return batch_tx, results


def as_store_error(exc: BaseException) -> BaseException:
    """sqlite errors become StoreError (with the cause kept); anything else is a caller's
    mistake or a bug and keeps its own type so it is not mistaken for "try again"."""
    if isinstance(exc, sqlite3.Error):
        error = StoreError(f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error
    return exc


class BatchStats:
    """Commits, failed batches, operations and commit time, kept by whichever side
    delivers the results (plain ints/floats: written by one thread, read anywhere)."""

    __slots__ = ("commits", "failed", "last_commit", "max_seen", "operations", "total")

    def __init__(self) -> None:
        self.commits = 0
        self.failed = 0
        self.operations = 0
        self.max_seen = 0
        self.last_commit = 0.0
        self.total = 0.0

    def record(self, operations: int, seconds: float | None) -> None:
        self.operations += operations
        self.max_seen = max(self.max_seen, operations)
        if seconds is None:
            self.failed += 1
        else:
            self.commits += 1
            self.last_commit = seconds
            self.total += seconds
