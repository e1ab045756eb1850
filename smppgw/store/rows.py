"""A job's row as both store backends read and write it: the column lists, the values of a
``StoredJob`` in column order, and the ``StoredJob`` / ``JobView`` built back from a row.

One definition for SQLite (``store.ops``) and PostgreSQL (``store.pg.ops``), so that a
column added to the job (as issues 14 and 15 each did) is added once, in one order, and
the two backends cannot drift apart. The backends differ only in how a JSON array column
comes back (SQLite: text; PostgreSQL: already decoded ``jsonb``), which the view builder
takes as a parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from smppgw.config import SourceConfig
from smppgw.store.model import JobState, JobView, StoredJob
from smppgw.store.routes import decode_attempts, decode_chain, encode_attempts, encode_chain

#: state number → label, without an enum lookup per row.
STATE_LABELS = {int(state): state.label for state in JobState}

#: A job's category when the column is NULL (every transactional job).
TRANSACTIONAL = "transactional"

#: The columns of ``job_values`` / ``job_from_row``, in their order.
JOB_COLUMNS = (
    "job_id, carrier, lane, destination, text, source_address, source_ton, source_npi, dlr,"
    " expires_at, response_topic, correlation_data, attempt, received_at, chain, attempts,"
    " send_at, expect_reply, held_until, hold_reason, category"
)
#: The columns ``view_from_row`` reads, in their order.
VIEW_COLUMNS = (
    "job_id, carrier, lane, state, status, error_code, destination, dlr, attempt, parts,"
    " message_ids, part_states, response_topic, correlation_data, received_at, expires_at,"
    " done_at, attempts, held_until, hold_reason, send_at"
)

_JOB_WIDTH = len(JOB_COLUMNS.split(","))
_VIEW_WIDTH = len(VIEW_COLUMNS.split(","))


def job_values(job: StoredJob) -> tuple[Any, ...]:
    """``job`` in ``JOB_COLUMNS`` order (the job's state is the caller's: it differs by
    how each backend inserts)."""
    source = job.source
    return (
        job.job_id,
        job.carrier,
        int(job.lane),
        job.destination,
        job.text,
        source.address if source else None,
        source.ton if source else None,
        source.npi if source else None,
        bool(job.dlr),
        job.expires_at,
        job.response_topic,
        job.correlation_data,
        job.attempt,
        job.received_at,
        encode_chain(job.chain),
        encode_attempts(job.attempts),
        job.send_at,
        job.expect_reply,
        job.held_until,
        job.hold_reason,
        None if job.category == TRANSACTIONAL else job.category,
    )


# Both builders below call the dataclass positionally, in its field order: a keyword call
# with ~20 arguments costs about four times as much (2.6 against 0.5 µs a view), and a
# view is built per receipt, a job per claimed row. tests/store/test_rows.py holds the
# order: a change to the fields of StoredJob / JobView that these do not follow fails it.


def job_from_row(row: Sequence[Any]) -> StoredJob:
    """A ``StoredJob`` from a row of ``JOB_COLUMNS`` (columns after them are ignored)."""
    (
        job_id,
        carrier,
        lane,
        destination,
        text,
        address,
        ton,
        npi,
        dlr,
        expires_at,
        response_topic,
        correlation_data,
        attempt,
        received_at,
        chain,
        attempts,
        send_at,
        expect_reply,
        held_until,
        hold_reason,
        category,
    ) = row[:_JOB_WIDTH]
    return StoredJob(
        job_id,
        carrier,
        lane,
        destination,
        text,
        None if address is None else SourceConfig(address, ton, npi),
        bool(dlr),
        expires_at,
        response_topic,
        correlation_data,
        attempt,
        received_at,
        decode_chain(chain),
        decode_attempts(attempts),
        send_at,
        expect_reply,
        held_until,
        hold_reason,
        (),  # events: stored with a new job, never read back with it
        category or TRANSACTIONAL,
    )


def view_from_row(row: Sequence[Any], json_list: Callable[[Any], list[Any]]) -> JobView:
    """A ``JobView`` from a row of ``VIEW_COLUMNS`` (columns after them are ignored);
    ``json_list`` reads the backend's ``message_ids`` / ``part_states`` column (NULL →
    ``[]``)."""
    (
        job_id,
        carrier,
        lane,
        state,
        status,
        error_code,
        destination,
        dlr,
        attempt,
        parts,
        message_ids,
        part_states,
        response_topic,
        correlation_data,
        received_at,
        expires_at,
        done_at,
        attempts,
        held_until,
        hold_reason,
        send_at,
    ) = row[:_VIEW_WIDTH]
    return JobView(
        job_id,
        carrier,
        lane,
        STATE_LABELS[state],
        status,
        error_code,
        destination,
        bool(dlr),
        attempt,
        parts,
        json_list(message_ids),
        json_list(part_states),
        response_topic,
        correlation_data,
        received_at,
        expires_at,
        done_at,
        decode_attempts(attempts),
        held_until,
        hold_reason,
        send_at,
    )
