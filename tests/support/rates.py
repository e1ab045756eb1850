"""Counting sends in time: the rate an SMSC sees, from the arrival times it recorded."""

from __future__ import annotations

from typing import Any

import pytest

from smppgw.engine.throttle import Throttle


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


class SendTimes:
    """The times the carrier's throttle granted its sends (``Throttle.take``'s own clock
    reading, taken where the PDU is written): the times the throttle keeps to the limit.

    Read from the throttle rather than stamped again by an observer: a second stamp can
    land a thread switch (``sys.getswitchinterval``, 5 ms) after the grant, longer than
    the throttle's guard, and then a window of stamps can hold one send too many although
    the grants kept to the limit. Recording only; every call goes through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, carrier: Any) -> None:
        self.times: list[float] = []
        take = Throttle.take

        def recording_take(throttle: Throttle, now: float | None = None) -> float:
            sent = take(throttle, now)
            if throttle is carrier.throttle:
                self.times.append(sent)
            return sent

        monkeypatch.setattr(Throttle, "take", recording_take)
