"""The power-of-two runs every multi-row INSERT is cut into."""

from __future__ import annotations

import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from smppgw.store import row_runs


@given(st.integers(min_value=0, max_value=5000), st.sampled_from([1, 2, 8, 256]))
def test_runs_cover_every_row_once_in_order_with_few_forms(count: int, most: int) -> None:
    runs = list(row_runs.runs(count, most))
    starts = [start for start, _ in runs]
    assert starts == [sum(rows for _, rows in runs[:i]) for i in range(len(runs))]
    assert sum(rows for _, rows in runs) == count
    for _, rows in runs:
        assert 1 <= rows <= most and rows & (rows - 1) == 0  # a power of two: few forms
    assert [rows for _, rows in runs] == sorted((rows for _, rows in runs), reverse=True)


def test_many_repeats_the_values_group_and_sqlite_takes_it() -> None:
    single = "INSERT INTO t (a, b) VALUES (?, ?)"
    assert row_runs.many(single, 1) == single
    assert row_runs.many(single, 3) == single + ", (?, ?), (?, ?)"
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    conn.execute(row_runs.many(single, 3), [1, "x", 2, "y", 3, "z"])
    assert conn.execute("SELECT a, b FROM t ORDER BY rowid").fetchall() == [
        (1, "x"),
        (2, "y"),
        (3, "z"),
    ]
