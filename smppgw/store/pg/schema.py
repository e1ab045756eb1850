"""The PostgreSQL schema: versioned migrations applied at start under an advisory lock.

Why an advisory lock: two gateways started at once both see "version 1 missing" and both
run ``CREATE TABLE``; one fails half-way. ``pg_advisory_xact_lock`` on a constant key
makes the second wait until the first has committed, then it finds the schema current and
does nothing. The lock is transaction-scoped, so a gateway killed mid-migration releases
it and leaves nothing applied (PostgreSQL DDL is transactional).

Adding a table or a column (how the SQLite-side features port here): write the
statements in a list named after the feature (``_CREATE_CONSENT``), append
``(next version, _CREATE_CONSENT)`` to ``STEPS``, and write the operations in
``smppgw.store.pg.ops``. Versions here are independent of SQLite's ``user_version``.

Differences from the SQLite layout, each for the cluster: ``owner`` on jobs (the node
that claimed it) and on outbox rows (the node that publishes them), the ``nodes`` table
(one lease per gateway; a job's or event's lease is its owner's), arrays instead of JSON
text for message ids and part states, and the ``blank_text`` trigger that honours each
connection's ``smppgw.keep_text`` setting (``store.keep_text`` is per gateway).
"""

from __future__ import annotations

from smppgw.ops.logs import get_logger
from smppgw.store.model import StoreError
from smppgw.store.pg.writer import Connection

log = get_logger("smppgw.store")

#: Constant key of the migration lock ("smppgw" in ASCII).
MIGRATION_LOCK = 0x736D70706777

_CREATE_BASE = [
    """
    CREATE TABLE jobs (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job_id text NOT NULL UNIQUE,
        carrier text,
        lane smallint NOT NULL DEFAULT 1,
        state smallint NOT NULL,
        destination text,
        text text,
        source_address text,
        source_ton smallint,
        source_npi smallint,
        dlr boolean NOT NULL DEFAULT true,
        expires_at double precision,
        response_topic text,
        correlation_data bytea,
        attempt integer NOT NULL DEFAULT 0,
        next_attempt double precision NOT NULL DEFAULT 0,
        received_at double precision NOT NULL,
        status text,
        error_code text,
        parts integer NOT NULL DEFAULT 0,
        message_ids text[],
        norm_ids text[],
        part_states text[],
        done_at double precision,
        owner text
    )
    """,
    # Claims walk one carrier's queued jobs in (lane, seq) order.
    "CREATE INDEX jobs_queue ON jobs (carrier, lane, seq) WHERE state = 0",
    "CREATE INDEX jobs_retry ON jobs (carrier, next_attempt) WHERE state = 0 AND next_attempt > 0",
    # Jobs mid-send by owner: a node's own on release and recovery, a dead node's on
    # takeover. Statements that name jobs by id write ``state + 0`` so that this partial
    # index never looks usable to them (the unique job_id index is the right one; stale
    # statistics on a young table made the planner walk all of a node's claims instead).
    "CREATE INDEX jobs_active ON jobs (owner) WHERE state IN (1, 2)",
    "CREATE INDEX jobs_done ON jobs (done_at) WHERE done_at IS NOT NULL",
    """
    CREATE TABLE msgids (
        carrier text NOT NULL,
        normalized_id text NOT NULL,
        job_id text NOT NULL,
        part integer NOT NULL,
        parts integer NOT NULL,
        PRIMARY KEY (carrier, normalized_id)
    )
    """,
    """
    CREATE TABLE outbox (
        event_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        topic text NOT NULL,
        payload bytea NOT NULL,
        correlation_data bytea,
        owner text NOT NULL
    )
    """,
    "CREATE INDEX outbox_owner ON outbox (owner, event_id)",
    """
    CREATE TABLE dead_events (
        event_id bigint PRIMARY KEY,
        topic text NOT NULL,
        payload bytea NOT NULL,
        correlation_data bytea,
        reason text NOT NULL,
        dead_at double precision NOT NULL
    )
    """,
    """
    CREATE TABLE tenant_usage (
        tenant text NOT NULL,
        day text NOT NULL,
        parts integer NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, day)
    )
    """,
    # One row per gateway: its lease, renewed every lease/3 (server clock, no skew).
    """
    CREATE TABLE nodes (
        node_id text PRIMARY KEY,
        lease_until double precision NOT NULL,
        started_at double precision NOT NULL
    )
    """,
    # store.keep_text off (the connection's smppgw.keep_text is not 'on'): a job's text is
    # blanked in the statement that makes it submitted or final, whatever the path.
    """
    CREATE FUNCTION smppgw_blank_text() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.state >= 3 AND NEW.text IS NOT NULL
           AND current_setting('smppgw.keep_text', true) IS DISTINCT FROM 'on' THEN
            NEW.text := NULL;
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER blank_text BEFORE UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state >= 3 AND NEW.text IS NOT NULL)
    EXECUTE FUNCTION smppgw_blank_text()
    """,
]

#: Version 2, ``carriers[].max_binds``: the account's binds held across the cluster, one
#: row per bind slot in use. A slot is free when it has no row or its node's lease ran out
#: (``nodes``), so a dead gateway's binds come back with its lease.
_CREATE_BIND_SLOTS = [
    """
    CREATE TABLE bind_slots (
        carrier text NOT NULL,
        slot integer NOT NULL,
        node text NOT NULL,
        PRIMARY KEY (carrier, slot)
    )
    """,
]

#: Version 3, issue 15 (failover and ported numbers), as SQLite's ``_CREATE_FAILOVER``:
#: a job's ``chain`` (the carriers it may go to, in order, a JSON array; NULL: it never
#: moves) and ``attempts`` (the carriers that did not take it, ``[[carrier, error], ...]``;
#: appended in the statement that moves it); ``carrier_up`` (who can send to what); and
#: the ported-number table, one row per
#: number shared by every gateway of the cluster: learned from refusals (``source``
#: 'learned', ``expires_at`` now + ``routing.ported_ttl``) or loaded from an operator's
#: list ('file', 'import'; ``expires_at`` NULL: until replaced or forgotten).
_CREATE_FAILOVER = [
    "ALTER TABLE jobs ADD COLUMN chain jsonb",
    "ALTER TABLE jobs ADD COLUMN attempts jsonb",
    """
    CREATE TABLE ported (
        number text PRIMARY KEY,
        carrier text NOT NULL,
        source text NOT NULL,
        changed_at double precision NOT NULL,
        expires_at double precision
    )
    """,
    # The carriers each gateway has a bind up to (and not paused): a carrier is down for
    # the cluster only when no gateway with a live lease has a row for it, so the failover
    # monitor of a gateway that lost its binds leaves the shared queue to the others.
    """
    CREATE TABLE carrier_up (
        carrier text NOT NULL,
        node text NOT NULL,
        PRIMARY KEY (carrier, node)
    )
    """,
    # ``replace_source`` reloads and the purge of expired learned rows.
    "CREATE INDEX ported_source ON ported (source)",
    "CREATE INDEX ported_expiry ON ported (expires_at) WHERE expires_at IS NOT NULL",
]

#: Version 4, held jobs, replies and consent (issue 14; the same meaning as SQLite's
#: ``_CREATE_SCHEDULE`` and ``_CREATE_CONSENT``). A held job is in state -1 with
#: ``held_until`` (when a release timer looks at it next) and ``hold_reason``; the partial
#: index ``jobs_held`` holds only them. ``reply_windows``: one row per open
#: ``expect_reply`` window, newest (highest ``window_id``) first per number, shared by
#: every gateway (an MO may reach another gateway than the one that sent the job).
#: ``consent`` / ``marketing_sends`` / ``consent_counts`` as on SQLite; the marketing cap
#: is made cluster-wide by a transaction-scoped advisory lock per number (see
#: ``smppgw.store.pg.consent``), not by the layout.
_CREATE_SCHEDULE_CONSENT = [
    "ALTER TABLE jobs ADD COLUMN held_until double precision",
    "ALTER TABLE jobs ADD COLUMN hold_reason text",
    "ALTER TABLE jobs ADD COLUMN send_at double precision",
    "ALTER TABLE jobs ADD COLUMN expect_reply integer",
    "ALTER TABLE jobs ADD COLUMN category text",
    "CREATE INDEX jobs_held ON jobs (held_until, lane, seq) WHERE state = -1",
    """
    CREATE TABLE reply_windows (
        window_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        number text NOT NULL,
        job_id text NOT NULL,
        until double precision NOT NULL,
        response_topic text,
        correlation_data bytea
    )
    """,
    "CREATE INDEX reply_windows_number ON reply_windows (number, window_id)",
    "CREATE INDEX reply_windows_until ON reply_windows (until)",
    """
    CREATE TABLE consent (
        number text PRIMARY KEY,
        opted_out boolean NOT NULL,
        keyword text,
        source text NOT NULL,
        carrier text,
        changed_at double precision NOT NULL
    )
    """,
    """
    CREATE TABLE marketing_sends (
        job_id text PRIMARY KEY,
        number text NOT NULL,
        at double precision NOT NULL
    )
    """,
    "CREATE INDEX marketing_sends_number ON marketing_sends (number, at)",
    "CREATE INDEX marketing_sends_at ON marketing_sends (at)",
    """
    CREATE TABLE consent_counts (
        action text NOT NULL,
        source text NOT NULL,
        changes bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (action, source)
    )
    """,
]

#: (version, statements): applied in order, each step in the migrating transaction.
STEPS: list[tuple[int, list[str]]] = [
    (1, _CREATE_BASE),
    (2, _CREATE_BIND_SLOTS),
    (3, _CREATE_FAILOVER),
    (4, _CREATE_SCHEDULE_CONSENT),
]
SCHEMA_VERSION = max(step for step, _ in STEPS)

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS smppgw_schema (version integer NOT NULL, applied_at"
    " timestamptz NOT NULL DEFAULT now())"
)


async def schema_version(conn: Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('smppgw_schema') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM smppgw_schema"))


async def migrate(conn: Connection) -> list[int]:
    """Bring the database to ``SCHEMA_VERSION``; the versions applied (empty: current).
    Refuses a newer schema (an older smppgw must not guess at a newer layout)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(_VERSION_TABLE)
        version = await schema_version(conn)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {version} is newer than this smppgw supports "
                f"({SCHEMA_VERSION}); upgrade smppgw"
            )
        # Each step not yet recorded, not only those above the highest: steps merged from
        # branches developed side by side (3 and 4) apply whichever was applied first.
        done = {int(row[0]) for row in await conn.fetch("SELECT version FROM smppgw_schema")}
        applied: list[int] = []
        for step, statements in STEPS:
            if step in done:
                continue
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO smppgw_schema (version) VALUES ($1)", step)
            applied.append(step)
    if applied:
        log.info("store_migrated", backend="postgres", versions=applied)
    return applied
