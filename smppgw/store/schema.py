"""The SQLite schema, its version, and how a connection is set up.

Durability reasoning (docs/architecture.md, invariant "nothing lost"):

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

import os
import sqlite3
from collections.abc import Callable
from typing import Any

from smppgw.ops.logs import get_logger
from smppgw.store.model import StoreError

log = get_logger("smppgw.store")

SCHEMA_VERSION = 6

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


#: Version 3 (failover, issue 15): a job's carrier chain (JSON list, first = where it was
#: routed; NULL: it never moves) and the carriers that did not take it (JSON list of
#: ``{"carrier", "error"}``); and the ported-number cache, number → carrier, learned from
#: refusals (``source`` 'learned', ``expires_at`` now + ``routing.ported_ttl``) or loaded
#: from an operator's list ('file' from ``routing.ported_file``, 'import' from ``smppgw
#: routes import``; ``expires_at`` NULL: until replaced or forgotten).
_CREATE_FAILOVER = [
    "ALTER TABLE jobs ADD COLUMN chain TEXT",
    "ALTER TABLE jobs ADD COLUMN attempts TEXT",
    """
    CREATE TABLE ported (
        number TEXT PRIMARY KEY,
        carrier TEXT NOT NULL,
        source TEXT NOT NULL,
        changed_at REAL NOT NULL,
        expires_at REAL
    ) WITHOUT ROWID
    """,
]


#: Version 4, scheduling and replies (issue 14). A held job (``send_at``; later the marketing window
#: or a deferred cap) is a job in state -1 (``JobState.HELD``) with ``held_until`` (when
#: the release timer looks at it again: its release time, or its ttl when that comes
#: first) and ``hold_reason``. The claim query walks ``jobs_queue`` at state 0 only, so
#: held jobs are never read by the live path; ``jobs_held`` is a partial index that holds
#: only them and answers "when is the next one due?" and "which are due, by priority?".
#: ``expect_reply`` (seconds) is copied to ``reply_windows`` when the job is submitted:
#: one row per open window, newest (highest ``window_id``) first per number.
_CREATE_SCHEDULE = [
    "ALTER TABLE jobs ADD COLUMN held_until REAL",
    "ALTER TABLE jobs ADD COLUMN hold_reason TEXT",
    "ALTER TABLE jobs ADD COLUMN send_at REAL",
    "ALTER TABLE jobs ADD COLUMN expect_reply INTEGER",
    "CREATE INDEX jobs_held ON jobs (held_until, lane, seq) WHERE state = -1",
    """
    CREATE TABLE reply_windows (
        window_id INTEGER PRIMARY KEY AUTOINCREMENT,
        number TEXT NOT NULL,
        job_id TEXT NOT NULL,
        until REAL NOT NULL,
        response_topic TEXT,
        correlation_data BLOB
    )
    """,
    "CREATE INDEX reply_windows_number ON reply_windows (number, window_id)",
    "CREATE INDEX reply_windows_until ON reply_windows (until)",
]


#: Version 5 (consent, issue 14): each number's last consent change (``opted_out`` 1: no
#: marketing jobs; a Do-Not-Call list imported by ``smppgw consent import`` lands here too); the
#: marketing sends counted against ``consent.marketing_daily_cap`` (one row per accepted
#: marketing job, ``at`` its send or release time; purged after 24 h); and running totals
#: of consent changes by action and source, which ``smppgw consent`` (another process)
#: bumps too, so the gateway's metric sees admin changes. ``jobs.category`` is NULL for a
#: transactional job, ``marketing`` for one the consent rules apply to (checked again when
#: a held one is released).
_CREATE_CONSENT = [
    "ALTER TABLE jobs ADD COLUMN category TEXT",
    """
    CREATE TABLE consent (
        number TEXT PRIMARY KEY,
        opted_out INTEGER NOT NULL,
        keyword TEXT,
        source TEXT NOT NULL,
        carrier TEXT,
        changed_at REAL NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE marketing_sends (
        job_id TEXT PRIMARY KEY,
        number TEXT NOT NULL,
        at REAL NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE INDEX marketing_sends_number ON marketing_sends (number, at)",
    """
    CREATE TABLE consent_counts (
        action TEXT NOT NULL,
        source TEXT NOT NULL,
        changes INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (action, source)
    ) WITHOUT ROWID
    """,
]


#: Version 6 (issue 13): ``jobs_queue`` holds only queued jobs (state 0), which is all the
#: claim, the queue counts and a failover's move read from it. Before, every job stayed in
#: it for life under its current state, so each change of state (claimed, in flight,
#: submitted, final: four per job) moved its entry, ~2 µs of the writer's time each; now
#: a job leaves it once, when claimed, and a later change of state does not touch it.
#: ``state`` stays in the key (always 0) so that the plans read as before: an equality
#: on it, and ``count_queued`` answered from the index alone. A job list filtered by a
#: carrier and another state walks the table newest first instead (an operator's
#: command, with a limit).
_QUEUED_ONLY = [
    "DROP INDEX jobs_queue",
    "CREATE INDEX jobs_queue ON jobs (carrier, state, lane, seq, next_attempt) WHERE state = 0",
]


def _steps(statements: list[str]) -> Callable[[sqlite3.Connection], None]:
    def step(conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return step


#: version → step that upgrades a database from ``version`` to ``version + 1``.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _steps(_CREATE_V2),
    2: _steps(_CREATE_FAILOVER),
    3: _steps(_CREATE_SCHEDULE),
    4: _steps(_CREATE_CONSENT),
    5: _steps(_QUEUED_ONLY),
}


#: Mode of the database, -wal and -shm files: job texts (OTPs), numbers and ids are
#: nobody else's business, whatever the umask of whoever started the gateway.
FILE_MODE = 0o600


def make_private(path: str) -> list[str]:
    """Create ``path`` with mode 0600 unless it exists, and take group/other access away
    from it and its ``-wal`` / ``-shm`` files; returns the files that had to be tightened.

    Done before SQLite opens the database because SQLite's unix VFS creates ``-wal`` and
    ``-shm`` with the database file's own permission bits (``robust_open`` fchmods them to
    that mode, umask or not): a private database file keeps all three private. A database
    created by SQLite itself would get 0644 minus the umask, i.e. world-readable under the
    usual umask 022.
    """
    if path == ":memory:" or path.startswith("file:"):
        return []
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    tightened: list[str] = []
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, FILE_MODE)
            tightened.append(path)
    finally:
        os.close(fd)
    for side in (path + "-wal", path + "-shm"):
        try:
            if os.stat(side).st_mode & 0o077:
                os.chmod(side, FILE_MODE)
                tightened.append(side)
        except FileNotFoundError:
            pass
    return tightened


#: With ``store.keep_text: false`` (the default) a job's text (an OTP, most often) is
#: set to NULL in the very transaction that makes the job ``submitted`` or final
#: (rejected, failed, expired, delivered...), so it does not sit in the store for the
#: whole ``retention``. Nothing reads it after that: only queued jobs are (re)sent, and a
#: submitted job is never sent again. A TEMP trigger (this connection's, not part of the
#: schema) covers every path that changes ``state``, present and future. ``secure_delete``
#: makes SQLite overwrite the old text with zeros instead of leaving it in free space;
#: the WAL still holds recent pages until it is checkpointed and reused.
_BLANK_TEXT = """
    CREATE TEMP TRIGGER IF NOT EXISTS blank_text_when_done
    AFTER UPDATE OF state ON main.jobs
    WHEN NEW.state >= 3 AND NEW.text IS NOT NULL
    BEGIN
        UPDATE jobs SET text = NULL WHERE seq = NEW.seq;
    END
"""


class StoreConnection(sqlite3.Connection):
    """The writer's connection, carrying what its statements depend on.

    ``keep_text`` False: the operations that make a job ``submitted`` or final on the hot
    path (``store.ops``) set ``text = NULL`` in their own UPDATE, so the row is written
    once; the trigger (:data:`_BLANK_TEXT`) then finds the text gone and does nothing,
    and stays the safety net for every other path."""

    keep_text: bool = True


def blanks_text(conn: sqlite3.Connection) -> bool:
    """Whether ``conn``'s statements should blank a job's text as it ends (a connection
    not made by :func:`connect` says no: its trigger, if any, still does it)."""
    return isinstance(conn, StoreConnection) and not conn.keep_text


#: Adapters that bind a value exactly as sqlite3 does without them (None → NULL, bool →
#: 0/1, bytes → BLOB), registered so that the module finds one at once: sqlite3 binds only
#: an exact int, float, str or bytearray directly, and looks every other value up in its
#: adapter registry, then for ``__adapt__`` on the protocol and ``__conform__`` on the
#: value, before binding it as it is. A job's insert binds ~13 NULLs and a bool, each
#: outbox event a bytes payload and usually a NULL: ~0.33 µs a value in those misses,
#: ~5 µs of the writer's time a job (docs/performance.md, step 40). Each adapter is a
#: C callable returning its argument's own value: ``{}.get`` answers None for a key it
#: does not have, ``bytes(b)`` is ``b`` for an exact bytes, ``int(True)`` is 1 (how
#: sqlite3 binds a bool anyway, as an int subclass). Only these exact types are keyed:
#: subclasses still take the registry's usual path.
_PLAIN_ADAPTERS: tuple[tuple[type[Any], Callable[[Any], Any]], ...] = (
    (type(None), {}.get),
    (bool, int),
    (bytes, bytes),
)


def bind_plainly() -> None:
    """Register :data:`_PLAIN_ADAPTERS` (process-wide, idempotent; values bind as before)."""
    for kind, adapter in _PLAIN_ADAPTERS:
        sqlite3.register_adapter(kind, adapter)


def connect(
    path: str, *, busy_timeout: float, synchronous: str, keep_text: bool = True
) -> sqlite3.Connection:
    """Open ``path`` for the writer thread, in autocommit mode (we issue BEGIN ourselves).

    The files are made private first (:func:`make_private`). ``keep_text=False``
    (``store.keep_text``) blanks a job's text once it is no longer needed; see
    :data:`_BLANK_TEXT`.
    """
    if synchronous.upper() not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
    try:
        tightened = make_private(path)
    except OSError as exc:
        raise StoreError(f"{path}: cannot open: {exc.strerror or exc}") from exc
    for file in tightened:
        log.warning("store file was readable by group or others; now 0600", file=file)
    bind_plainly()
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, factory=StoreConnection
    )
    conn.keep_text = keep_text
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: cannot switch to WAL journal mode (got {mode})")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-16384")  # 16 MiB page cache
        migrate(conn)
        if not keep_text:
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute(_BLANK_TEXT)
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
            for statement in (
                _CREATE
                + _CREATE_V2
                + _CREATE_FAILOVER
                + _CREATE_SCHEDULE
                + _CREATE_CONSENT
                + _QUEUED_ONLY
            ):
                conn.execute(statement)
        else:
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](conn)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
