"""The SQLite schema, its version, and how a connection is set up.

Durability reasoning (invariant 1, "kill -9 loses nothing"):

* ``journal_mode=WAL`` with ``synchronous=NORMAL``: COMMIT appends the transaction's pages
  to the ``-wal`` file with ``write()`` and returns; the fsync happens at checkpoints.
  Once ``write()`` returned the bytes are in the kernel's page cache, which belongs to the
  OS, not to our process: killing the process (``kill -9``, OOM killer, a crash in a C
  extension) cannot undo them, and the next open replays the WAL. So every transaction
  whose COMMIT returned survives the death of the process. Only an OS crash or power loss
  can lose the last few transactions (never corrupting the file); ``synchronous=FULL``
  (an fsync per COMMIT, shared by the whole group commit) closes that gap too, at the cost
  of one disk flush per batch.
* The async API resolves a caller's future only after COMMIT returned, so "acknowledged"
  always means "in the WAL".

Migrations: ``PRAGMA user_version`` holds the schema version; a new database is created at
the current version, an older one is upgraded by the steps in ``MIGRATIONS``, a newer one
is refused (an older smppgw must not guess at a newer layout).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from smppgw.store.model import StoreError

SCHEMA_VERSION = 2

#: Jobs: ``seq`` (the rowid) is arrival order; ``job_id`` is the dedup key, kept in every
#: state until purge. ``done_at`` is set when the job is submitted or final (purge age).
#: ``message_ids`` / ``norm_ids`` / ``part_states`` are JSON arrays in part order.
_CREATE = [
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL UNIQUE,
        carrier TEXT,
        lane INTEGER NOT NULL DEFAULT 1,
        state INTEGER NOT NULL,
        destination TEXT,
        text TEXT,
        source_address TEXT,
        source_ton INTEGER,
        source_npi INTEGER,
        dlr INTEGER NOT NULL DEFAULT 1,
        expires_at REAL,
        response_topic TEXT,
        correlation_data BLOB,
        attempt INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL DEFAULT 0,
        received_at REAL NOT NULL,
        status TEXT,
        error_code TEXT,
        parts INTEGER NOT NULL DEFAULT 0,
        message_ids TEXT,
        norm_ids TEXT,
        part_states TEXT,
        done_at REAL
    )
    """,
    # The claim query walks this in (lane, seq) order for one carrier's queued jobs;
    # next_attempt rides along so that retry-later jobs are skipped without a table read.
    "CREATE INDEX jobs_queue ON jobs (carrier, state, lane, seq, next_attempt)",
    # Jobs waiting for a retry: tiny, answers "when is the next one due?".
    "CREATE INDEX jobs_retry ON jobs (carrier, next_attempt) WHERE state = 0 AND next_attempt > 0",
    # Jobs mid-send (claimed or in flight): tiny, scanned by recover().
    "CREATE INDEX jobs_active ON jobs (state) WHERE state IN (1, 2)",
    # Submitted / final jobs by age, for purge.
    "CREATE INDEX jobs_done ON jobs (done_at) WHERE done_at IS NOT NULL",
    """
    CREATE TABLE msgids (
        carrier TEXT NOT NULL,
        normalized_id TEXT NOT NULL,
        job_id TEXT NOT NULL,
        part INTEGER NOT NULL,
        parts INTEGER NOT NULL,
        PRIMARY KEY (carrier, normalized_id)
    ) WITHOUT ROWID
    """,
    # AUTOINCREMENT: ids never reused, so a publisher paging with after_id never skips one.
    """
    CREATE TABLE outbox (
        event_id INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        correlation_data BLOB
    )
    """,
]

#: Version 2: events the broker would not take are set aside here, out of the outbox, so
#: that one bad event never blocks the others (kept for inspection, never retried on their
#: own); and each tenant's parts per day, counted in the transaction that adds its jobs.
_CREATE_V2 = [
    """
    CREATE TABLE dead_events (
        event_id INTEGER PRIMARY KEY,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        correlation_data BLOB,
        reason TEXT NOT NULL,
        dead_at REAL NOT NULL
    )
    """,
    """
    CREATE TABLE tenant_usage (
        tenant TEXT NOT NULL,
        day TEXT NOT NULL,
        parts INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, day)
    ) WITHOUT ROWID
    """,
]


def _to_v2(conn: sqlite3.Connection) -> None:
    for statement in _CREATE_V2:
        conn.execute(statement)


#: version → step that upgrades a database from ``version`` to ``version + 1``.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _to_v2}


def connect(path: str, *, busy_timeout: float, synchronous: str) -> sqlite3.Connection:
    """Open ``path`` for the writer thread, in autocommit mode (we issue BEGIN ourselves)."""
    if synchronous.upper() not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: cannot switch to WAL journal mode (got {mode})")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-16384")  # 16 MiB page cache
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Create the schema when missing, upgrade it when older, refuse it when newer."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {version} is newer than this smppgw supports "
            f"({SCHEMA_VERSION}); upgrade smppgw"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        if version == 0:
            for statement in _CREATE + _CREATE_V2:
                conn.execute(statement)
        else:
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](conn)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
