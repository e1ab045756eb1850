"""Message id → job mappings into ``msgids``, many to a statement.

A submitted job's mapping (carrier, normalised id → job, part, parts) is kept on the
batch's ``Tx`` like its events (``smppgw.store.outbox_rows``) and inserted with the
batch's others before COMMIT: one ``INSERT OR REPLACE ... VALUES (...), (...), ...``
per power-of-two run of rows instead of a statement a part (docs/performance.md, step 45).
Rows go in the order the operations added them, and a later row replaces an earlier one
with the same key within a statement as across statements: a recycled id still points at
the newer job. A batch inserts what it kept before anything reads ``msgids`` (a receipt's
``lookup``, a purge; see ``Tx.flush``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from smppgw.store import row_runs

#: (carrier, normalized_id, job_id, part, parts)
MsgidRow = tuple[str, str, str, int, int]

INSERT_MSGID = (
    "INSERT OR REPLACE INTO msgids (carrier, normalized_id, job_id, part, parts)"
    " VALUES (?, ?, ?, ?, ?)"
)


def insert_msgids(conn: sqlite3.Connection, rows: Sequence[MsgidRow]) -> None:
    """Insert (or replace) ``rows`` in order."""
    for start, count in row_runs.runs(len(rows)):
        values: list[object] = []
        for row in rows[start : start + count]:
            values += row
        conn.execute(row_runs.many(INSERT_MSGID, count), values)
