"""The store's operations as plain functions of a transaction.

Each function runs in the writer thread inside the batch's transaction (and its own
SAVEPOINT): it may read and write freely, and either all of its writes commit or none do.
Queue-depth and outbox counters are reported through ``tx.depth`` / ``tx.outbox`` so that
the in-memory figures change only when the batch commits.

Nothing here loads an unbounded number of rows: claims, purges and event reads all take a
``limit`` and walk an index.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

from smppgw.outcome import job_status
from smppgw.pipeline.marketing import DAY, Go, Hold, MarketingGate, NumberState, Reject
from smppgw.store import row_runs
from smppgw.store.model import (
    ConsentChange,
    ConsentRecord,
    DeadEvent,
    JobState,
    JobView,
    OutboxEvent,
    RecoveryReport,
    ReplyWindow,
    StoredJob,
    Usage,
)
from smppgw.store.msgid_rows import INSERT_MSGID
from smppgw.store.outbox_rows import INSERT_EVENT, insert_events
from smppgw.store.routes import decode_attempts
from smppgw.store.rows import (
    JOB_COLUMNS,
    STATE_LABELS,
    VIEW_COLUMNS,
    job_from_row,
    job_values,
    view_from_row,
)
from smppgw.store.schema import blanks_text
from smppgw.store.writer import Tx

EventMaker = Callable[[JobView, str], list[OutboxEvent]]

HELD = int(JobState.HELD)
QUEUED = int(JobState.QUEUED)
SENDING = int(JobState.SENDING)
IN_FLIGHT = int(JobState.IN_FLIGHT)
SUBMITTED = int(JobState.SUBMITTED)
FINAL = int(JobState.FINAL)
_SUBMITTED_LABEL = STATE_LABELS[SUBMITTED]

_INSERT_JOB = (
    f"INSERT OR IGNORE INTO jobs ({JOB_COLUMNS}, state) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_CLAIM = (
    f"SELECT seq, {JOB_COLUMNS} FROM jobs "
    "WHERE carrier = ? AND state = 0 AND next_attempt <= ? ORDER BY lane, seq LIMIT ?"
)
_USED = "SELECT parts FROM tenant_usage WHERE tenant = ? AND day = ?"
_COUNT_USAGE = (
    "INSERT INTO tenant_usage (tenant, day, parts) VALUES (?, ?, ?)"
    " ON CONFLICT (tenant, day) DO UPDATE SET parts = parts + excluded.parts"
)
#: Set in the UPDATE that makes a job submitted or final when texts are not kept
#: (``schema.StoreConnection``): one write of the row, not a second by the trigger.
_BLANK = ", text = NULL"


def _job_row(job: StoredJob) -> tuple[Any, ...]:
    return (*job_values(job), QUEUED if job.held_until is None else HELD)


def _json_list(text: str | None) -> list[Any]:
    return json.loads(text) if text else []


def _view_from_row(row: Sequence[Any]) -> JobView:
    return view_from_row(row, _json_list)


def _add_events(tx: Tx, events: Sequence[OutboxEvent]) -> None:
    """``events`` into the outbox: kept on a batch's ``tx`` and inserted with the rest of
    its events (``outbox_rows``), or at once by a ``tx`` that keeps none. The events
    themselves are not changed (``api``'s rule: ids come back from ``add_events`` and on
    events read back)."""
    tx.outbox += len(events)
    deferred = tx.deferred
    if deferred is not None:
        deferred += events
        return
    execute = tx.conn.execute
    for event in events:
        execute(INSERT_EVENT, (event.topic, event.payload, event.correlation_data))


#: Most values bound in one ``IN (...)`` (SQLite allows 32,766 since 3.32; far below).
_CHUNK = 512


@functools.lru_cache(maxsize=128)
def _in_statement(statement: str, size: int) -> str:
    return statement.format(", ".join("?" * size))


def _each_chunk(tx: Tx, statement: str, values: Sequence[Any]) -> int:
    """``statement`` (with ``IN ({})``) once per chunk of ``values`` rather than once per
    value as ``executemany`` does: one statement for a whole claim or outbox round.
    Returns the rows changed.

    The list is padded to a power of two by repeating its last value (``IN`` is a set:
    the same rows match), so that each statement has 10 forms, not one per length: with
    a form per length the claims, in-flight marks and acks of a busy gateway (any length
    from 1 to 500) overflow the connection's cache of 128 prepared statements and SQLite
    compiles them again and again."""
    changed = 0
    execute = tx.conn.execute
    for start in range(0, len(values), _CHUNK):
        chunk = list(values[start : start + _CHUNK])
        size = 1 << (len(chunk) - 1).bit_length()
        chunk += chunk[-1:] * (size - len(chunk))
        changed += execute(_in_statement(statement, size), chunk).rowcount
    return changed


def _state(tx: Tx, job_id: str) -> tuple[int, str | None, int, str | None] | None:
    row = tx.conn.execute(
        "SELECT state, carrier, lane, hold_reason FROM jobs WHERE job_id = ?", (job_id,)
    )
    found = row.fetchone()
    return None if found is None else (found[0], found[1], found[2], found[3])


def _leave_queue(
    tx: Tx, state: int, carrier: str | None, lane: int, reason: str | None = None
) -> None:
    """Count a job out of its lane (queued) or out of the held jobs (held)."""
    if state == QUEUED and carrier is not None:
        tx.depth[(carrier, lane)] -= 1
    elif state == HELD:
        tx.held[reason or ""] -= 1


@functools.lru_cache(maxsize=16)
def _insert_jobs(rows: int) -> str:
    """``rows`` jobs in one statement, answering the ids it inserted (not those ignored)."""
    return row_runs.many(_INSERT_JOB, rows) + " RETURNING job_id"


def _inserted(tx: Tx, jobs: Sequence[StoredJob]) -> list[bool]:
    """Per job whether it was inserted (False: its id was known, or came earlier in
    ``jobs``). One statement per power-of-two run of rows (at most 9 forms with a cached
    plan): a statement's start, binding and reset once for up to 256 jobs instead of once
    a job (~1 µs a job less; docs/performance.md, step 44)."""
    if len(jobs) == 1:
        return [tx.conn.execute(_INSERT_JOB, _job_row(jobs[0])).rowcount == 1]
    added: list[bool] = []
    execute = tx.conn.execute
    for start, rows in row_runs.runs(len(jobs)):
        chunk = jobs[start : start + rows]
        values: list[Any] = []
        for job in chunk:
            values += _job_row(job)
        new = {job_id for (job_id,) in execute(_insert_jobs(rows), values)}
        for job in chunk:
            # The first of a repeated id is the one inserted: the next finds it known.
            added.append(job.job_id in new)
            new.discard(job.job_id)
    return added


# -- operations --------------------------------------------------------------------------
def add_jobs(tx: Tx, jobs: Sequence[StoredJob]) -> list[bool]:
    added = _inserted(tx, jobs)
    for job, new in zip(jobs, added, strict=True):
        if not new:
            continue
        if job.held_until is None:
            tx.depth[(job.carrier, int(job.lane))] += 1
        else:
            tx.held[job.hold_reason or ""] += 1
        if job.events:
            _add_events(tx, job.events)
    return added


#: What ``add_admitted`` did with one job: True added, False a known id (nothing written),
#: None over its tenant's daily parts (not added), a :class:`Reject` from the marketing
#: gate (not added), or a :class:`Hold` (added, not claimable before ``until``).
Admission = bool | None | Reject | Hold


def add_counted(
    tx: Tx, jobs: Sequence[StoredJob], usage: Sequence[Usage | None]
) -> list[bool | None]:
    """``add_jobs`` that also counts each tenant job's parts in ``tenant_usage``: per job
    True (added), False (known id: nothing written, nothing counted) or None (not added:
    its parts would take the tenant's day over ``limit``)."""
    return [a for a in add_admitted(tx, jobs, usage, None) if not isinstance(a, Reject | Hold)]


def _known(tx: Tx, job_id: str) -> bool:
    return tx.conn.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is not None


def number_state(tx: Tx, number: str, now: float, leave_out: str = "") -> NumberState:
    """Whether ``number`` opted out, and its marketing sends counted in the last 24 h
    (but the job ``leave_out``'s own)."""
    row = tx.conn.execute("SELECT opted_out FROM consent WHERE number = ?", (number,)).fetchone()
    sends = tx.conn.execute(
        "SELECT at FROM marketing_sends WHERE number = ? AND at > ? AND job_id != ?",
        (number, now - DAY, leave_out),
    ).fetchall()
    return NumberState(opted_out=bool(row and row[0]), sends=[at for (at,) in sends])


#: Makes the held form of a job (``job, until, reason``): the held-jobs mechanism's hook.
HoldMaker = Callable[[StoredJob, float, str], StoredJob]


def add_admitted(
    tx: Tx,
    jobs: Sequence[StoredJob],
    usage: Sequence[Usage | None],
    gate: MarketingGate | None,
    hold: HoldMaker | None = None,
) -> list[Admission]:
    """Add jobs with their checks in this transaction: a tenant job's parts counted in
    ``tenant_usage`` (``usage[i]``, None: uncounted), and a ``marketing`` job decided by
    ``gate`` and, once taken, counted in ``marketing_sends`` at its send or release time.
    A job the gate holds is added as ``hold(job, until, reason)`` makes it (the held-jobs
    mechanism's ``Holds.held``; runs in the writer thread: pure and quick); without
    ``hold`` it waits in its lane with ``next_attempt`` at the release time. A marketing
    job already held for its ``send_at`` is decided at its release (the release check,
    ``marketing_release``), and counted at its ``send_at`` meanwhile."""
    execute = tx.conn.execute
    result: list[Admission] = []
    for job, use in zip(jobs, usage, strict=True):
        marketing = job.category == "marketing" and gate is not None
        #: Held for its own send_at already: decided when it comes due.
        later = job.held_until is not None
        decision: Go | Hold | Reject | None = None
        if marketing:
            assert gate is not None
            if _known(tx, job.job_id):
                result.append(False)
                continue
            if not later:
                decision = gate.decide(number_state(tx, job.destination, tx.now), tx.now)
            if isinstance(decision, Reject):
                result.append(decision)
                continue
        if use is not None and use.limit is not None:
            row = execute(_USED, (use.tenant, use.day)).fetchone()
            if (row[0] if row else 0) + use.parts > use.limit:
                result.append(False if _known(tx, job.job_id) else None)
                continue
        if isinstance(decision, Hold) and hold is not None:
            job = hold(job, decision.until, decision.reason)
        new = add_jobs(tx, (job,))[0]
        if new and use is not None:
            execute(_COUNT_USAGE, (use.tenant, use.day, use.parts))
        if not new or not marketing:
            result.append(new)
            continue
        at = tx.now
        if isinstance(decision, Hold):
            at = decision.until
            if hold is None:
                execute("UPDATE jobs SET next_attempt = ? WHERE job_id = ?", (at, job.job_id))
        elif later and job.send_at is not None:
            at = job.send_at
        execute(
            "INSERT OR REPLACE INTO marketing_sends (job_id, number, at) VALUES (?, ?, ?)",
            (job.job_id, job.destination, at),
        )
        result.append(decision if isinstance(decision, Hold) else True)
    return result


def marketing_release(
    tx: Tx, job_id: str, gate: MarketingGate, now: float
) -> Go | Hold | Reject | None:
    """Decide again, at its release, a held job: None when it is no marketing job (no
    ``marketing_sends`` row: not the gate's business). Its own counted send is left out of
    the number's state; then it is counted again at its new time (Go: now, Hold: the new
    release time), or forgotten (Reject: it will never be sent)."""
    row = tx.conn.execute(
        "SELECT number FROM marketing_sends WHERE job_id = ?", (job_id,)
    ).fetchone()
    if row is None:
        return None
    decision = gate.decide(number_state(tx, row[0], now, leave_out=job_id), now)
    if isinstance(decision, Reject):
        tx.conn.execute("DELETE FROM marketing_sends WHERE job_id = ?", (job_id,))
    else:
        at = decision.until if isinstance(decision, Hold) else now
        tx.conn.execute("UPDATE marketing_sends SET at = ? WHERE job_id = ?", (at, job_id))
    return decision


# -- consent -----------------------------------------------------------------------------
_UPSERT_CONSENT = (
    "INSERT INTO consent (number, opted_out, keyword, source, carrier, changed_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (number) DO UPDATE SET opted_out ="
    " excluded.opted_out, keyword = excluded.keyword, source = excluded.source,"
    " carrier = excluded.carrier, changed_at = excluded.changed_at"
)
_COUNT_CONSENT = (
    "INSERT INTO consent_counts (action, source, changes) VALUES (?, ?, ?)"
    " ON CONFLICT (action, source) DO UPDATE SET changes = changes + excluded.changes"
)


def apply_consent(tx: Tx, change: ConsentChange) -> bool:
    """Record ``change`` with its events when it changes the number's consent (an opt-out
    of a number already opted out changes nothing); True when it did."""
    row = tx.conn.execute(
        "SELECT opted_out FROM consent WHERE number = ?", (change.number,)
    ).fetchone()
    wanted = 1 if change.action == "opt_out" else 0
    if row is not None and (change.only_if_unknown or row[0] == wanted):
        return False
    tx.conn.execute(
        _UPSERT_CONSENT,
        (change.number, wanted, change.keyword, change.source, change.carrier, tx.now),
    )
    tx.conn.execute(_COUNT_CONSENT, (change.action, change.source, 1))
    _add_events(tx, change.events)
    return True


def record_mo(
    tx: Tx,
    number: str,
    now: float,
    make_events: Callable[[ReplyWindow | None], list[OutboxEvent]],
    change: ConsentChange | None,
    replies: Sequence[StoredJob],
    reply_on_change: Sequence[StoredJob],
) -> tuple[ReplyWindow | None, bool]:
    """``add_mo`` with what its consent keyword does: the consent change (with its
    events), the replies it always gets (help) and those it gets only when its consent
    changed (opt-out), all in the MO's transaction, so its deliver_sm is answered only
    once all of it is durable. The reply window, and whether the consent changed."""
    window = add_mo(tx, number, now, make_events)
    changed = change is not None and apply_consent(tx, change)
    add_jobs(tx, [*replies, *(reply_on_change if changed else ())])
    return window, changed


def set_opted_out(
    tx: Tx, numbers: Sequence[str], opted_out: bool, make_events: Callable[[str], OutboxEvent]
) -> list[str]:
    """An operator's change of many numbers (``smppgw consent``): those whose consent it
    changes get a row (source ``admin``) and ``make_events(number)``; returns them."""
    wanted = 1 if opted_out else 0
    already: set[str] = set()
    unique = list(dict.fromkeys(numbers))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        rows = tx.conn.execute(
            f"SELECT number FROM consent WHERE opted_out = ? AND number IN"
            f" ({', '.join('?' * len(chunk))})",
            (wanted, *chunk),
        )
        already.update(number for (number,) in rows)
    if not opted_out:  # a number never recorded is not opted out: nothing to change
        known: set[str] = set()
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            rows = tx.conn.execute(
                f"SELECT number FROM consent WHERE number IN ({', '.join('?' * len(chunk))})",
                tuple(chunk),
            )
            known.update(number for (number,) in rows)
        already.update(n for n in unique if n not in known)
    changed = [n for n in unique if n not in already]
    tx.conn.executemany(
        _UPSERT_CONSENT, [(n, wanted, None, "admin", None, tx.now) for n in changed]
    )
    if changed:
        action = "opt_out" if opted_out else "opt_in"
        tx.conn.execute(_COUNT_CONSENT, (action, "admin", len(changed)))
        _add_events(tx, [make_events(n) for n in changed])
    return changed


def consent_records(tx: Tx, opted_out_only: bool, limit: int | None) -> list[ConsentRecord]:
    """Numbers with a consent record, newest change first."""
    where = " WHERE opted_out = 1" if opted_out_only else ""
    rows = tx.conn.execute(
        "SELECT number, opted_out, keyword, source, carrier, changed_at FROM consent"
        f"{where} ORDER BY changed_at DESC, number LIMIT ?",
        (-1 if limit is None else limit,),
    )
    return [
        ConsentRecord(number, bool(out), keyword, source, carrier, at)
        for number, out, keyword, source, carrier, at in rows
    ]


def consent_counts(tx: Tx) -> dict[tuple[str, str], int]:
    """(action, source) → consent changes recorded since the store was created."""
    rows = tx.conn.execute("SELECT action, source, changes FROM consent_counts")
    return {(action, source): n for action, source, n in rows}


def purge_marketing_sends(tx: Tx, older_than: float) -> int:
    """Forget marketing sends the rolling 24 h no longer counts."""
    return tx.conn.execute("DELETE FROM marketing_sends WHERE at < ?", (older_than,)).rowcount


def tenant_usage(tx: Tx, tenant: str, day: str) -> int:
    row = tx.conn.execute(_USED, (tenant, day)).fetchone()
    return int(row[0]) if row else 0


def count_waiting(tx: Tx, prefix: str | None) -> int:
    """Jobs whose id starts with ``prefix`` not yet submitted or final: a range of the
    unique job_id index (``prefix`` ends in '/', so the range ends before the next
    character, '0'). ``None``: ids without '/' (the default tenant; a full scan)."""
    if prefix is None:
        query = "SELECT count(*) FROM jobs WHERE state < 3 AND instr(job_id, '/') = 0"
        return int(tx.conn.execute(query).fetchone()[0])
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    row = tx.conn.execute(
        "SELECT count(*) FROM jobs WHERE job_id >= ? AND job_id < ? AND state < 3", (prefix, end)
    ).fetchone()
    return int(row[0])


def add_rejected(
    tx: Tx,
    job_id: str,
    events: Sequence[OutboxEvent],
    carrier: str | None,
    code: str | None,
    response_topic: str | None,
    correlation_data: bytes | None,
    received_at: float,
) -> bool:
    cursor = tx.conn.execute(
        "INSERT OR IGNORE INTO jobs (job_id, carrier, state, status, error_code,"
        " response_topic, correlation_data, received_at, done_at)"
        " VALUES (?, ?, ?, 'rejected', ?, ?, ?, ?, ?)",
        (job_id, carrier, FINAL, code, response_topic, correlation_data, received_at, tx.now),
    )
    if cursor.rowcount != 1:
        return False
    _add_events(tx, events)
    return True


def claim(tx: Tx, carrier: str, limit: int, now: float) -> list[StoredJob]:
    rows = tx.conn.execute(_CLAIM, (carrier, now, limit)).fetchall()
    if not rows:
        return []
    _each_chunk(
        tx, "UPDATE jobs SET state = 1, next_attempt = 0 WHERE seq IN ({})", [r[0] for r in rows]
    )
    jobs = [job_from_row(row[1:]) for row in rows]
    for job in jobs:
        tx.depth[(carrier, job.lane)] -= 1
    return jobs


def release(tx: Tx, job_ids: Sequence[str]) -> int:
    execute = tx.conn.execute
    released = 0
    for job_id in job_ids:
        row = execute(
            "UPDATE jobs SET state = 0 WHERE job_id = ? AND state IN (1, 2)"
            " RETURNING carrier, lane",
            (job_id,),
        ).fetchone()
        if row is not None:
            tx.depth[(row[0], row[1])] += 1
            released += 1
    return released


def release_unsent(tx: Tx, carrier: str | None) -> int:
    """Every claimed (``sending`` / ``in_flight``) job of ``carrier`` (of every carrier
    when ``None``) back in its lane."""
    if carrier is None:
        rows = tx.conn.execute(
            "UPDATE jobs SET state = 0 WHERE state IN (1, 2) RETURNING carrier, lane"
        ).fetchall()
    else:
        rows = tx.conn.execute(
            "UPDATE jobs SET state = 0 WHERE state IN (1, 2) AND carrier = ?"
            " RETURNING carrier, lane",
            (carrier,),
        ).fetchall()
    for row in rows:
        tx.depth[(row[0], row[1])] += 1
    return len(rows)


def retry_later(tx: Tx, job_id: str, attempt: int, next_attempt: float) -> bool:
    current = _state(tx, job_id)
    if current is None or current[0] >= SUBMITTED or current[0] == HELD:
        return False
    state, carrier, lane, _ = current
    tx.conn.execute(
        "UPDATE jobs SET state = 0, attempt = ?, next_attempt = ? WHERE job_id = ?",
        (attempt, next_attempt, job_id),
    )
    if state != QUEUED and carrier is not None:
        tx.depth[(carrier, lane)] += 1
    return True


def mark_in_flight(tx: Tx, job_ids: Sequence[str]) -> None:
    _each_chunk(tx, "UPDATE jobs SET state = 2 WHERE state = 1 AND job_id IN ({})", job_ids)


_SUBMIT = (
    "UPDATE jobs SET state = ?, status = 'submitted', parts = ?, message_ids = ?,"
    " norm_ids = ?, part_states = ?, done_at = ?{} WHERE job_id = ?"
)
#: A single-part job (most jobs): its id lists built by SQLite's ``json_array`` and its
#: part states a constant, instead of three ``json.dumps`` (same JSON, read back alike).
_SUBMIT_ONE = (
    "UPDATE jobs SET state = ?, status = 'submitted', parts = 1, message_ids = json_array(?),"
    " norm_ids = json_array(?), part_states = '[null]', done_at = ?{} WHERE job_id = ?"
)


#: What a submitted job needs for its reply window, if it asked for one.
_SUBMIT_RETURNING = " RETURNING expect_reply, destination, response_topic, correlation_data"


def _open_reply(
    tx: Tx,
    job_id: str,
    expect_reply: int,
    number: str,
    response_topic: str | None,
    correlation_data: bytes | None,
) -> None:
    """The job asked for ``expect_reply`` seconds: from now (its submission), an MO from
    its destination is its reply. Copied out of ``jobs`` so that a window outlives the
    job's purge and the lookup reads one small index."""
    tx.conn.execute(
        "INSERT INTO reply_windows (number, job_id, until, response_topic, correlation_data)"
        " VALUES (?, ?, ?, ?, ?)",
        (number, job_id, tx.now + expect_reply, response_topic, correlation_data),
    )


def _submit_statements(one_part: bool, blank: bool) -> tuple[str, str]:
    """(for a claimed job, for a job in any state) of one ``_SUBMIT`` form."""
    update = (_SUBMIT_ONE if one_part else _SUBMIT).format(_BLANK if blank else "")
    return update + " AND state IN (1, 2)" + _SUBMIT_RETURNING, update + _SUBMIT_RETURNING


#: (single part, blank the text) → statements, built once: the same string object every
#: call also spares the statement cache a hash of a new string.
_SUBMITS = {
    (one, blank): _submit_statements(one, blank) for one in (True, False) for blank in (True, False)
}


def mark_submitted(
    tx: Tx,
    job_id: str,
    carrier: str,
    normalized_ids: Sequence[str],
    raw_ids: Sequence[str],
    final: bool,
    events: Sequence[OutboxEvent],
) -> None:
    if len(normalized_ids) != len(raw_ids) or not raw_ids:
        raise ValueError("normalized_ids and raw_ids must be non-empty and of equal length")
    parts = len(raw_ids)
    state = FINAL if final else SUBMITTED
    values: tuple[Any, ...]
    if parts == 1:
        values = (state, raw_ids[0], normalized_ids[0], tx.now, job_id)
    else:
        raw, norm, blank = list(raw_ids), list(normalized_ids), [None] * parts
        values = (
            state,
            parts,
            json.dumps(raw),
            json.dumps(norm),
            json.dumps(blank),
            tx.now,
            job_id,
        )
    claimed, any_state = _SUBMITS[parts == 1, blanks_text(tx.conn)]
    execute = tx.conn.execute
    # The usual case in one statement: a claimed job (sending / in flight) is in no
    # queue-depth count, so nothing else needs its old state.
    row = execute(claimed, values).fetchone()
    if row is None:
        current = _state(tx, job_id)
        if current is None:
            raise KeyError(f"unknown job {job_id!r}")
        if current[0] == FINAL:
            raise ValueError(f"job {job_id!r} is already final")
        _leave_queue(tx, *current)
        row = execute(any_state, values).fetchone()
    if row[0] is not None:
        _open_reply(tx, job_id, *row)
    # A recycled message id (SMSC counters wrap) now points at the newer job.
    msgids = tx.msgids
    if parts == 1 and msgids is not None:  # kept for the batch's multi-row INSERT
        msgids.append((carrier, normalized_ids[0], job_id, 0, 1))
    else:
        rows = [(carrier, nid, job_id, part, parts) for part, nid in enumerate(normalized_ids)]
        if msgids is not None:
            msgids += rows
        else:
            tx.conn.executemany(INSERT_MSGID, rows)
    _add_events(tx, events)


def finish(
    tx: Tx, job_id: str, status: str, events: Sequence[OutboxEvent], code: str | None
) -> bool:
    current = _state(tx, job_id)
    if current is None or current[0] == FINAL:
        return False
    _leave_queue(tx, *current)
    tx.conn.execute(
        "UPDATE jobs SET state = 4, status = ?, error_code = ?, done_at = ?, held_until = NULL"
        " WHERE job_id = ?",
        (status, code, tx.now, job_id),
    )
    _add_events(tx, events)
    return True


_STATES = {label: state for state, label in STATE_LABELS.items()}
#: What a cancel may end: a job waiting in its lane or held (never one being sent).
_CANCELLABLE = frozenset((STATE_LABELS[QUEUED], STATE_LABELS[HELD]))


def cancel_queued(tx: Tx, job_id: str, make_events: EventMaker) -> tuple[JobView | None, bool]:
    """A job still waiting in its lane becomes final ``cancelled`` with its events; a job
    in any other state is left alone (its view says which). Claimed jobs are not
    ``queued``, so a cancel never races a submit_sm. Returns the view (None for an
    unknown id) and whether it was cancelled now."""
    view = job(tx, job_id)
    if view is None or view.state not in _CANCELLABLE:
        return view, False
    _leave_queue(tx, _STATES[view.state], view.carrier, view.lane, view.hold_reason)
    tx.conn.execute(
        "UPDATE jobs SET state = 4, status = 'cancelled', done_at = ?, held_until = NULL"
        " WHERE job_id = ?",
        (tx.now, job_id),
    )
    view.state, view.status, view.done_at = JobState.FINAL.label, "cancelled", tx.now
    _add_events(tx, make_events(view, "cancelled"))
    return view, True


def requeue_unknown(tx: Tx, job_id: str) -> tuple[JobView | None, bool]:
    """A ``failed`` / ``unknown_outcome`` job whose text was kept goes back to its lane
    (attempt count kept, at its original place in arrival order). Returns the job's view
    (after the change when one was made) and whether it was requeued."""
    view = job(tx, job_id)
    if view is None or (view.status, view.error_code) != ("failed", "unknown_outcome"):
        return view, False
    row = tx.conn.execute("SELECT text IS NOT NULL FROM jobs WHERE job_id = ?", (job_id,))
    if not row.fetchone()[0] or view.carrier is None:
        return view, False
    tx.conn.execute(
        "UPDATE jobs SET state = 0, status = NULL, error_code = NULL, done_at = NULL,"
        " next_attempt = 0 WHERE job_id = ?",
        (job_id,),
    )
    tx.depth[(view.carrier, view.lane)] += 1
    view.state, view.status, view.error_code, view.done_at = "queued", None, None, None
    return view, True


def list_jobs(
    tx: Tx, carrier: str | None, state: int | None, lane: int | None, limit: int
) -> list[JobView]:
    """The newest ``limit`` jobs matching every filter given (``jobs_queue`` serves a
    carrier with a state)."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("carrier", carrier), ("state", state), ("lane", lane)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = tx.conn.execute(
        f"SELECT {VIEW_COLUMNS} FROM jobs{clause} ORDER BY seq DESC LIMIT ?", (*params, limit)
    ).fetchall()
    return [_view_from_row(row) for row in rows]


def lookup(tx: Tx, carrier: str, normalized_id: str) -> tuple[str, int, int] | None:
    tx.flush()  # a submit earlier in this batch maps its ids too
    row = tx.conn.execute(
        "SELECT job_id, part, parts FROM msgids WHERE carrier = ? AND normalized_id = ?",
        (carrier, normalized_id),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def job(tx: Tx, job_id: str) -> JobView | None:
    row = tx.conn.execute(f"SELECT {VIEW_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,))
    found = row.fetchone()
    return None if found is None else _view_from_row(found)


#: A single-part job's receipt that decides nothing yet (ENROUTE...): the part recorded.
_RECEIPT_ONE = "UPDATE jobs SET part_states = json_array(?) WHERE job_id = ? AND parts = 1"
#: A single-part submitted job's receipt that makes it final: the part, the status and
#: what its events need, in one statement (no read of the row first). It reads back only
#: what the UPDATE does not itself decide (``_final_view``).
_RECEIPT_ONE_FINAL = (
    "UPDATE jobs SET part_states = json_array(?), state = 4, status = ?, done_at = ?"
    " WHERE job_id = ? AND parts = 1 AND state = 3 RETURNING carrier, lane, error_code,"
    " destination, dlr, attempt, json_extract(message_ids, '$[0]'), response_topic,"
    " correlation_data, received_at, expires_at, attempts, held_until, hold_reason, send_at"
)
_FINAL_LABEL = STATE_LABELS[FINAL]


def _final_view(row: Sequence[Any], job_id: str, state: str, status: str, now: float) -> JobView:
    """The view of a single-part job ``_RECEIPT_ONE_FINAL`` just made final (``JobView``'s
    fields in order, as ``rows.view_from_row`` builds it)."""
    (carrier, lane, error_code, destination, dlr, attempt, message_id, response_topic) = row[:8]
    correlation_data, received_at, expires_at, attempts, held_until, hold_reason = row[8:14]
    return JobView(
        job_id,
        carrier,
        lane,
        _FINAL_LABEL,
        status,
        error_code,
        destination,
        bool(dlr),
        attempt,
        1,
        [message_id],
        [state],
        response_topic,
        correlation_data,
        received_at,
        expires_at,
        now,
        decode_attempts(attempts),
        held_until,
        hold_reason,
        row[14],
    )


@functools.lru_cache(maxsize=64)
def _one_part_status(state: str) -> str | None:
    """``job_status`` of a single-part job with receipt ``state`` (a few distinct states
    arrive, thousands of times a second)."""
    return job_status((state,))


def apply_receipt(
    tx: Tx, job_id: str, part: int, state: str, make_events: EventMaker
) -> str | None:
    if part == 0:
        # Most jobs are one part: what the receipt does follows from its state alone.
        status = _one_part_status(state)
        if status is None:
            if tx.conn.execute(_RECEIPT_ONE, (state, job_id)).rowcount:
                return None
        else:
            now = tx.now
            row = tx.conn.execute(_RECEIPT_ONE_FINAL, (state, status, now, job_id)).fetchone()
            if row is not None:
                _add_events(tx, make_events(_final_view(row, job_id, state, status, now), status))
                return status
    # Several parts, or not a submitted job (unknown, or final already): read it first.
    view = job(tx, job_id)
    if view is None or not 0 <= part < view.parts:
        return None
    view.part_states[part] = state
    states = json.dumps(view.part_states)
    # Already final (dlr off, or an earlier part decided it): keep it, record the part.
    status = job_status(view.part_states) if view.state == _SUBMITTED_LABEL else None
    if status is None:
        tx.conn.execute("UPDATE jobs SET part_states = ? WHERE job_id = ?", (states, job_id))
        return None
    # The part and the final status in one statement.
    tx.conn.execute(
        "UPDATE jobs SET part_states = ?, state = 4, status = ?, done_at = ? WHERE job_id = ?",
        (states, status, tx.now, job_id),
    )
    view.state, view.status, view.done_at = STATE_LABELS[FINAL], status, tx.now
    _add_events(tx, make_events(view, status))
    return status


def add_events(tx: Tx, events: Sequence[OutboxEvent]) -> list[int]:
    """``events`` into the outbox now (their ids are the answer), after the batch's kept
    ones (ids in the order the events were added)."""
    tx.flush()
    tx.outbox += len(events)
    return insert_events(tx.conn, events)


def pending_events(tx: Tx, limit: int, after_id: int) -> list[OutboxEvent]:
    tx.flush()  # the batch's own events are pending too
    rows = tx.conn.execute(
        "SELECT event_id, topic, payload, correlation_data FROM outbox"
        " WHERE event_id > ? ORDER BY event_id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    return [OutboxEvent(topic, payload, corr, event_id) for event_id, topic, payload, corr in rows]


def ack_events(tx: Tx, event_ids: Sequence[int]) -> int:
    tx.flush()  # ids known to a caller were inserted already; kept in order anyway
    deleted = _each_chunk(tx, "DELETE FROM outbox WHERE event_id IN ({})", event_ids)
    tx.outbox -= deleted
    return deleted


_SET_ASIDE = (
    "INSERT INTO dead_events (event_id, topic, payload, correlation_data, reason, dead_at)"
    " SELECT event_id, topic, payload, correlation_data, ?, ? FROM outbox WHERE event_id = ?"
)


def set_aside(tx: Tx, reasons: Sequence[tuple[int, str]]) -> int:
    """Move each (event_id, reason) from the outbox to ``dead_events``; an id no longer in
    the outbox is skipped. Returns how many moved."""
    tx.flush()
    moved = 0
    execute = tx.conn.execute
    for event_id, reason in reasons:
        if execute(_SET_ASIDE, (reason, tx.now, event_id)).rowcount:
            execute("DELETE FROM outbox WHERE event_id = ?", (event_id,))
            moved += 1
    tx.outbox -= moved
    return moved


def dead_events(tx: Tx, limit: int) -> list[DeadEvent]:
    """The ``limit`` most recently set aside, newest first."""
    rows = tx.conn.execute(
        "SELECT event_id, topic, payload, correlation_data, reason, dead_at FROM dead_events"
        " ORDER BY dead_at DESC, event_id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [DeadEvent(*row) for row in rows]


def purge_dead_events(tx: Tx, older_than: float) -> int:
    return tx.conn.execute("DELETE FROM dead_events WHERE dead_at < ?", (older_than,)).rowcount


def count_dead_events(tx: Tx) -> int:
    return int(tx.conn.execute("SELECT count(*) FROM dead_events").fetchone()[0])


def recover(
    tx: Tx, resend_on_timeout: Callable[[str], bool], make_events: EventMaker
) -> RecoveryReport:
    rows = tx.conn.execute(
        "SELECT job_id, carrier, lane, state FROM jobs WHERE state IN (1, 2) ORDER BY seq"
    ).fetchall()
    requeued = resent = 0
    failed: list[str] = []
    for job_id, carrier, lane, state in rows:
        if state == SENDING or resend_on_timeout(carrier):
            tx.conn.execute("UPDATE jobs SET state = 0 WHERE job_id = ?", (job_id,))
            tx.depth[(carrier, lane)] += 1
            if state == SENDING:
                requeued += 1
            else:
                resent += 1
            continue
        tx.conn.execute(
            "UPDATE jobs SET state = 4, status = 'failed', error_code = 'unknown_outcome',"
            " done_at = ? WHERE job_id = ?",
            (tx.now, job_id),
        )
        view = job(tx, job_id)
        assert view is not None
        _add_events(tx, make_events(view, "failed"))
        failed.append(job_id)
    return RecoveryReport(requeued=requeued, resent=resent, failed=failed)


def purge_some(tx: Tx, older_than: float, limit: int) -> int:
    tx.flush()
    rows = tx.conn.execute(
        "SELECT seq, job_id, carrier, norm_ids FROM jobs WHERE done_at < ? LIMIT ?",
        (older_than, limit),
    ).fetchall()
    execute = tx.conn.execute
    for seq, job_id, carrier, norm_ids in rows:
        for nid in json.loads(norm_ids) if norm_ids else ():
            # Only this job's mapping: a recycled id may belong to a newer job by now.
            execute(
                "DELETE FROM msgids WHERE carrier = ? AND normalized_id = ? AND job_id = ?",
                (carrier, nid, job_id),
            )
        execute("DELETE FROM jobs WHERE seq = ?", (seq,))
    return len(rows)


def next_due(tx: Tx, carrier: str) -> float | None:
    row = tx.conn.execute(
        "SELECT min(next_attempt) FROM jobs WHERE carrier = ? AND state = 0 AND next_attempt > 0",
        (carrier,),
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def count_queued(tx: Tx) -> dict[tuple[str, int], int]:
    rows = tx.conn.execute(
        "SELECT carrier, lane, count(*) FROM jobs WHERE state = 0 GROUP BY carrier, lane"
    )
    return {(carrier, lane): n for carrier, lane, n in rows if carrier is not None}


def count_outbox(tx: Tx) -> int:
    tx.flush()
    return int(tx.conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


def count_held(tx: Tx) -> dict[str, int]:
    """Held jobs by reason (once, at open: the partial index ``jobs_held`` only)."""
    rows = tx.conn.execute(
        "SELECT hold_reason, count(*) FROM jobs WHERE state = -1 GROUP BY hold_reason"
    )
    return {reason or "": n for reason, n in rows}


# -- held jobs ---------------------------------------------------------------------------
def next_held(tx: Tx) -> float | None:
    """When the earliest held job is due: the first entry of ``jobs_held``."""
    row = tx.conn.execute("SELECT min(held_until) FROM jobs WHERE state = -1").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def due_held(tx: Tx, now: float, limit: int) -> list[StoredJob]:
    """Up to ``limit`` held jobs due at ``now``, most urgent lane first, then arrival
    order (they stay held: :func:`settle_held` says what becomes of each)."""
    rows = tx.conn.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE state = -1 AND held_until <= ?"
        " ORDER BY lane, seq LIMIT ?",
        (now, limit),
    ).fetchall()
    return [job_from_row(row) for row in rows]


def hold(
    tx: Tx,
    job_id: str,
    until: float,
    reason: str,
    events: Sequence[OutboxEvent],
    send_at: float | None = None,
) -> bool:
    """Hold a queued or held job until ``until`` (the timer's next look) for ``reason``,
    with ``events``; ``send_at`` (when given) is the release time its events announce.
    False, nothing written, for a job in any other state."""
    current = _state(tx, job_id)
    if current is None or current[0] not in (QUEUED, HELD):
        return False
    _leave_queue(tx, *current)
    tx.conn.execute(
        "UPDATE jobs SET state = -1, held_until = ?, hold_reason = ?,"
        " send_at = coalesce(?, send_at) WHERE job_id = ?",
        (until, reason, send_at, job_id),
    )
    tx.held[reason] += 1
    _add_events(tx, events)
    return True


def release_held(tx: Tx, job_ids: Sequence[str]) -> list[tuple[str, int]]:
    """Held jobs into their lanes at their place in arrival order (``seq``); returns the
    (carrier, lane) of each one moved (a job cancelled meanwhile is skipped)."""
    moved: list[tuple[str, int]] = []
    for job_id in job_ids:
        row = tx.conn.execute(
            "SELECT hold_reason FROM jobs WHERE job_id = ? AND state = -1", (job_id,)
        ).fetchone()
        if row is None:
            continue
        carrier, lane = tx.conn.execute(
            "UPDATE jobs SET state = 0, held_until = NULL, hold_reason = NULL"
            " WHERE job_id = ? RETURNING carrier, lane",
            (job_id,),
        ).fetchone()
        tx.held[row[0] or ""] -= 1
        tx.depth[(carrier, lane)] += 1
        moved.append((carrier, lane))
    return moved


# -- replies -----------------------------------------------------------------------------
def open_reply(tx: Tx, number: str, now: float) -> ReplyWindow | None:
    """The newest window still open for ``number`` (newest wins)."""
    row = tx.conn.execute(
        "SELECT job_id, until, response_topic, correlation_data FROM reply_windows"
        " WHERE number = ? AND until > ? ORDER BY window_id DESC LIMIT 1",
        (number, now),
    ).fetchone()
    if row is None:
        return None
    return ReplyWindow(row[0], number, row[1], row[2], row[3])


def add_mo(
    tx: Tx,
    number: str,
    now: float,
    make_events: Callable[[ReplyWindow | None], list[OutboxEvent]],
) -> ReplyWindow | None:
    """An MO from ``number``: its open reply window (if any) and its events, stored in
    one transaction, so what the events say and what the store knew cannot differ."""
    window = open_reply(tx, number, now)
    _add_events(tx, make_events(window))
    return window


def purge_replies(tx: Tx, before: float) -> int:
    """Windows closed before ``before`` (the ``reply_windows_until`` index)."""
    return tx.conn.execute("DELETE FROM reply_windows WHERE until < ?", (before,)).rowcount
