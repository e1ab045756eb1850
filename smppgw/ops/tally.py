"""Per-job metric updates gathered during an event-loop turn and applied once at its end.

prometheus-client takes a lock for every ``inc()`` and, in ``Histogram.observe``, walks the
bucket bounds in Python and takes two locks (sum, bucket). A job makes about ten such
updates on the event loop (submit_sm, its response and latency, parts, queue latency,
receipt and its latency, received, final), ~3 % of the loop's CPU per job flat out (py-spy,
issue 13). A turn often handles many jobs, so the updates of one turn are gathered here in
plain dicts and applied at the turn's end: a counter child gets one ``inc(n)``, a histogram
child one ``_sum.inc`` and one ``inc`` per bucket hit. A scrape (another thread, or a later
callback) sees the totals once the turn has ended, as if the updates had happened then.

Outside a running event loop (tests, the CLI) updates are applied at once.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from typing import Any

__all__ = ["Tally", "check_histogram"]


def check_histogram(child: Any) -> None:
    """Fail at start-up, by name, if a prometheus-client upgrade changed what
    :meth:`Tally.flush` relies on (the bucket bounds, one value per bucket, the sum)."""
    for name in ("_upper_bounds", "_buckets", "_sum"):
        if not hasattr(child, name):
            raise RuntimeError(f"prometheus_client Histogram has no {name}: update ops/tally.py")
    if len(child._upper_bounds) != len(child._buckets) or child._upper_bounds[-1] != float("inf"):
        raise RuntimeError("prometheus_client Histogram buckets changed: update ops/tally.py")


class Tally:
    """Counter increments and histogram observations of the current turn (event loop only)."""

    __slots__ = ("_counts", "_observed", "_scheduled")

    def __init__(self) -> None:
        self._counts: dict[Any, float] = {}
        self._observed: dict[Any, list[float]] = {}
        self._scheduled = False

    def inc(self, child: Any, amount: float = 1.0) -> None:
        """``child.inc(amount)`` at the end of this turn (at once outside a loop)."""
        if not self._scheduled and not self._schedule():
            child.inc(amount)
            return
        counts = self._counts
        counts[child] = counts.get(child, 0.0) + amount

    def observe(self, child: Any, value: float) -> None:
        """``child.observe(value)`` at the end of this turn (at once outside a loop)."""
        if not self._scheduled and not self._schedule():
            child.observe(value)
            return
        values = self._observed.get(child)
        if values is None:
            self._observed[child] = [value]
        else:
            values.append(value)

    def _schedule(self) -> bool:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        loop.call_soon(self.flush)
        self._scheduled = True
        return True

    def flush(self) -> None:
        """Apply everything gathered (the end of the turn; also callable at any time)."""
        self._scheduled = False
        counts, self._counts = self._counts, {}
        observed, self._observed = self._observed, {}
        for child, amount in counts.items():
            child.inc(amount)
        for hist, values in observed.items():
            bounds = hist._upper_bounds
            buckets = hist._buckets
            hits: dict[int, int] = {}
            for value in values:
                # First bound >= value: the bucket ``observe`` would increment (the last
                # bound is +Inf, so there is always one).
                i = bisect_left(bounds, value)
                hits[i] = hits.get(i, 0) + 1
            hist._raise_if_not_observable()
            hist._sum.inc(sum(values))
            for i, n in hits.items():
                buckets[i].inc(n)
