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

#: ``VIEW_COLUMNS`` of a single-part job (SQLite): its one message id and part state read
#: out of their JSON arrays by SQLite, so the view needs no JSON decoding in Python
#: (``view_from_row(row, one_item)``).
VIEW_COLUMNS_ONE_PART = VIEW_COLUMNS.replace(
    "message_ids, part_states",
    "json_extract(message_ids, '$[0]'), json_extract(part_states, '$[0]')",
)


def one_item(value: Any) -> list[Any]:
    """The ``json_list`` of a ``VIEW_COLUMNS_ONE_PART`` row: the part's value as a list."""
    return [value]


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


def job_from_row(row: Sequence[Any]) -> StoredJob:
    """A ``StoredJob`` from a row of ``JOB_COLUMNS``."""
    (job_id, carrier, lane, destination, text, address, ton, npi, dlr, expires_at) = row[:10]
    response_topic, correlation_data, attempt, received_at, chain, attempts = row[10:16]
    send_at, expect_reply, held_until, hold_reason, category = row[16:21]
    return StoredJob(
        job_id=job_id,
        carrier=carrier,
        lane=lane,
        destination=destination,
        text=text,
        source=None if address is None else SourceConfig(address, ton, npi),
        dlr=bool(dlr),
        expires_at=expires_at,
        response_topic=response_topic,
        correlation_data=correlation_data,
        attempt=attempt,
        received_at=received_at,
        chain=decode_chain(chain),
        attempts=decode_attempts(attempts),
        send_at=send_at,
        expect_reply=expect_reply,
        held_until=held_until,
        hold_reason=hold_reason,
        category=category or TRANSACTIONAL,
    )


def view_from_row(row: Sequence[Any], json_list: Callable[[Any], list[Any]]) -> JobView:
    """A ``JobView`` from a row of ``VIEW_COLUMNS``; ``json_list`` reads the backend's
    ``message_ids`` / ``part_states`` column (NULL → ``[]``)."""
    return JobView(
        job_id=row[0],
        carrier=row[1],
        lane=row[2],
        state=STATE_LABELS[row[3]],
        status=row[4],
        error_code=row[5],
        destination=row[6],
        dlr=bool(row[7]),
        attempt=row[8],
        parts=row[9],
        message_ids=json_list(row[10]),
        part_states=json_list(row[11]),
        response_topic=row[12],
        correlation_data=row[13],
        received_at=row[14],
        expires_at=row[15],
        done_at=row[16],
        attempts=decode_attempts(row[17]),
        held_until=row[18],
        hold_reason=row[19],
        send_at=row[20],
    )
