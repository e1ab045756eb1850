"""Counting sends in time: the rate an SMSC sees, from the arrival times it recorded."""

from __future__ import annotations


def most_in_second_ending_at(times: list[float], since: float) -> int:
    """The most sends in any one second (t - 1, t] that ends at a send at or after ``since``:
    what a sliding-window limit checks as each of those sends arrives."""
    times = sorted(times)
    best = 0
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        if t >= since:
            best = max(best, i - j + 1)
    return best


def in_span(times: list[float], start: float, end: float) -> int:
    """Sends in [start, end)."""
    return sum(1 for t in times if start <= t < end)
