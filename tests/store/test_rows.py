"""The job's row definition shared by both backends (``smppgw.store.rows``): a job read
back is the job written, and a view's fields come from their own columns.

The builders call ``StoredJob`` / ``JobView`` positionally (speed), so these tests are what
holds them to the dataclasses' field order: every field gets a value no other has."""

from __future__ import annotations

import dataclasses
import json

from smppgw.config import SourceConfig
from smppgw.store.model import JobState, JobView, StoredJob
from smppgw.store.rows import (
    JOB_COLUMNS,
    VIEW_COLUMNS,
    job_from_row,
    job_values,
    view_from_row,
)


def test_a_job_read_back_is_the_job_written() -> None:
    job = StoredJob(
        job_id="t/j1",
        carrier="viettel",
        lane=2,
        destination="84912345678",
        text="code 123456",
        source=SourceConfig("Shop", 5, 0),
        dlr=False,
        expires_at=1000.5,
        response_topic="app/replies",
        correlation_data=b"corr",
        attempt=3,
        received_at=999.25,
        chain=("viettel", "mobifone"),
        attempts=(("vina", "refused"),),
        send_at=1200.0,
        expect_reply=600,
        held_until=1100.0,
        hold_reason="send_at",
        category="marketing",
    )
    values = job_values(job)
    assert len(values) == len(JOB_COLUMNS.split(","))
    assert job_from_row(values) == job
    plain = StoredJob("j2", "viettel", 1, "849", "hi", received_at=1.0)
    assert job_from_row(job_values(plain)) == plain


def test_each_view_field_comes_from_its_own_column() -> None:
    columns = [c.strip() for c in VIEW_COLUMNS.split(",")]
    # A distinct value per column, of the column's kind.
    special: dict[str, object] = {
        "lane": 2,
        "state": int(JobState.SUBMITTED),
        "dlr": 0,
        "attempt": 4,
        "parts": 2,
        "message_ids": json.dumps(["A", "B"]),
        "part_states": json.dumps(["DELIVRD", None]),
        "correlation_data": b"cd",
        "received_at": 1.5,
        "expires_at": 2.5,
        "done_at": 3.5,
        "attempts": json.dumps([["vina", "refused"]]),
        "held_until": 4.5,
        "send_at": 5.5,
    }
    row = tuple(special.get(column, f"<{column}>") for column in columns)
    view = view_from_row(row, lambda text: json.loads(text) if text else [])
    assert dataclasses.asdict(view) == {
        "job_id": "<job_id>",
        "carrier": "<carrier>",
        "lane": 2,
        "state": "submitted",
        "status": "<status>",
        "error_code": "<error_code>",
        "destination": "<destination>",
        "dlr": False,
        "attempt": 4,
        "parts": 2,
        "message_ids": ["A", "B"],
        "part_states": ["DELIVRD", None],
        "response_topic": "<response_topic>",
        "correlation_data": b"cd",
        "received_at": 1.5,
        "expires_at": 2.5,
        "done_at": 3.5,
        "attempts": (("vina", "refused"),),
        "held_until": 4.5,
        "hold_reason": "<hold_reason>",
        "send_at": 5.5,
    }
    assert [f.name for f in dataclasses.fields(JobView)] == columns
