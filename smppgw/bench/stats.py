"""Small, exact statistics for the benchmark (no numpy: the gateway does not depend on it)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Latency", "max_in_window", "mean_rate", "percentile"]


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (``p`` in 0..100) of already sorted values: the
    smallest value with at least p % of the values at or below it, so p99 of 100 values
    is the 99th, never an interpolation below an observed value."""
    if not sorted_values:
        return math.nan
    if p <= 0:
        return sorted_values[0]
    rank = math.ceil(p / 100.0 * len(sorted_values))
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


@dataclass(frozen=True, slots=True)
class Latency:
    """Percentiles of a latency sample, in milliseconds."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Latency:
        values = sorted(s * 1000.0 for s in seconds)
        if not values:
            nan = math.nan
            return cls(0, nan, nan, nan, nan, nan)
        return cls(
            count=len(values),
            p50=percentile(values, 50),
            p90=percentile(values, 90),
            p99=percentile(values, 99),
            max=values[-1],
            mean=sum(values) / len(values),
        )

    def brief(self) -> str:
        return f"p50 {self.p50:.1f} ms, p99 {self.p99:.1f} ms, max {self.max:.1f} ms"


def max_in_window(times: Sequence[float], span: float = 1.0) -> tuple[int, float]:
    """The most events in any half-open window ``[t, t + span)`` and where it starts.

    Checking windows that start at an event is enough: sliding a window's start forward
    to its first event never loses one. ``times`` must be sorted.
    """
    best, best_at = 0, math.nan
    j = 0
    n = len(times)
    for i in range(n):
        if j < i:
            j = i
        end = times[i] + span
        while j < n and times[j] < end:
            j += 1
        if j - i > best:
            best, best_at = j - i, times[i]
    return best, best_at


def mean_rate(times: Sequence[float], start: float, seconds: float) -> float:
    """Events per second in ``[start, start + seconds)``; ``times`` sorted."""
    end = start + seconds
    count = sum(1 for t in times if start <= t < end)
    return count / seconds
