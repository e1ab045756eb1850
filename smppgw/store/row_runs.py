"""Multi-row statements in power-of-two runs: the one shape every many-rows INSERT takes.

A batch inserts its jobs, outbox events and message id mappings many to a statement
(docs/performance.md, steps 41, 44, 45). Cutting ``n`` rows into runs of a power of two
(100 = 64 + 32 + 4) keeps the statement texts to a few forms, so sqlite3's statement
cache keeps their plans; 256 rows a statement stays far below SQLite's 32,766 variables
for any of those tables.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

#: Most rows in one statement.
MOST_ROWS = 256


def runs(count: int, most: int = MOST_ROWS) -> Iterator[tuple[int, int]]:
    """``(start, rows)`` of each run covering ``count`` rows in order, largest first."""
    start = 0
    left = count
    while left:
        rows = min(most, 1 << (left.bit_length() - 1))
        yield start, rows
        start += rows
        left -= rows


@functools.lru_cache(maxsize=64)
def many(single: str, rows: int) -> str:
    """``single`` (an INSERT ending in one ``VALUES (?, ...)`` group) for ``rows`` rows."""
    group = single[single.rindex("(") :]
    return single + f", {group}" * (rows - 1)
