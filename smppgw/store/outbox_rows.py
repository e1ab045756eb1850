"""Outbox events into the ``outbox`` table: one at a time, or many in one statement.

A group-commit batch (``smppgw.store.batch``) does not insert its operations' events as
each one adds them: it keeps them on its ``Tx`` and inserts them all before COMMIT with
multi-row ``INSERT ... VALUES (...), (...), ...`` statements (:func:`insert_events`).
Each event of a delivered job (``submitted``, ``delivered``) was one INSERT of its own,
and an INSERT into this ``AUTOINCREMENT`` table reads and writes ``sqlite_sequence`` once
per *statement*, besides the statement's own start, bind and reset: 100 events in one
statement cost ~1.6 µs each against ~3.3 µs one by one (docs/performance.md, step 41).

The ids come out as before: a statement's rows get consecutive ids in the order given
(AUTOINCREMENT: each new id is one more than the largest ever used, and the store has
one writer), so the last row's id (``lastrowid``) gives every one of them (``add_events``
answers them); and a batch inserts what it kept before anything reads the outbox or adds
an event at once (see ``Tx.flush``), so ids still follow the order in which the
operations added them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from smppgw.store import row_runs
from smppgw.store.model import OutboxEvent

INSERT_EVENT = "INSERT INTO outbox (topic, payload, correlation_data) VALUES (?, ?, ?)"


def insert_events(conn: sqlite3.Connection, events: Sequence[OutboxEvent]) -> list[int]:
    """Insert ``events`` in order; their ids, in the same order (the events themselves are
    not changed: the store's rule, ``smppgw.store.api``).

    The rows go in statements of a power of two rows each (at most 9 forms with a cached
    plan, whatever the count: 100 events are 64 + 32 + 4 rows)."""
    ids: list[int] = []
    for start, rows in row_runs.runs(len(events)):
        values: list[object] = []
        for event in events[start : start + rows]:
            values += (event.topic, event.payload, event.correlation_data)
        last = conn.execute(row_runs.many(INSERT_EVENT, rows), values).lastrowid
        assert last is not None
        ids.extend(range(last - rows + 1, last + 1))
    return ids
