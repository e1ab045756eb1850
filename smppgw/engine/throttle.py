"""The account's submit_sm rate limit, shared by every session of one carrier.

Carriers enforce their contracted TPS over a *sliding* one-second window measured at the
SMSC, and answer ESME_RTHROTTLED (or silently queue, or cut the bind) when it is exceeded.
A plain token bucket with capacity ``tps`` is therefore wrong: after an idle second it
allows ``tps`` at once and then ``tps`` more in the following second. And an emission
interval of exactly ``1/tps`` is wrong the other way: every late timer wake-up loses the
lateness for good, so at 50 TPS a 1 ms late timer costs 5 % of the contract.

This module combines two rules:

* **GCRA** (the virtual-scheduling form of a token bucket) with emission interval
  ``T = (1 + margin) / tps`` and a tolerance ``tau``: a send is allowed once the
  theoretical arrival time is at most ``tau`` ahead. The tolerance lets a late wake-up catch
  up instead of losing the time: a wake-up late by less than ``tau`` costs nothing. ``tau``
  is 0.9 interval clamped to 20..50 ms: below 45 TPS two sends share a wake-up only right
  after a late one; at thousands of TPS it allows bursts of 20-50 ms worth, so timer
  granularity does not cap the rate.
* An exact **sliding-window guard**: the time of the last ``floor(tps)`` sends is kept, and a
  send is allowed only when the oldest of them is more than ``1 + guard`` seconds old. GCRA's
  tolerance alone could put ``tps + 1`` sends in ``1 + margin - tau`` seconds; the guard
  makes "no one-second window holds more than ``tps``" hold by construction, with ``guard``
  seconds to spare for the jitter between our write and the SMSC's clock.

Under a backlog the rate is ``tps / (1 + margin)``, about 99.5 % of the contract (less
the guard's 0.5 % when bursts line up against the window).

An SMSC whose clock lags ours by a varying amount (its front-end queue, the network) can
still count ``tps + 1`` when the jitter exceeds the guard. The carrier then answers its
ESME_RTHROTTLED with a pause only until :meth:`Throttle.window_frees` and widens the guard
by ``GUARD`` (up to ``GUARD_MAX``: the rate stays above 98 %), so a jittery SMSC costs one
cheap throttle, not one per second.

Times come from ``time.monotonic()`` (not ``loop.time()``, which uvloop rounds to
milliseconds and caches per loop iteration), and the caller writes the PDU at most
``engine.carrier.HOLD_MAX`` (1 ms) after :meth:`Throttle.take` (a burst's submits go out
in one write), so the recorded time is the send time to within a fifth of the guard.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

#: Emission interval stretch: sustained rate is tps / (1 + MARGIN).
MARGIN = 0.005
#: Slack the sliding-window guard keeps beyond one second, for send-to-SMSC jitter.
GUARD = 0.005
#: The guard after SMSC throttling widened it (:meth:`Throttle.widen_guard`) at most.
GUARD_MAX = 0.010


def tolerance_for(interval: float) -> float:
    """GCRA tolerance: how late a timer wake-up may be without losing sending time.

    Nine tenths of an interval, but at least 20 ms (a busy event loop is that late now and
    then) and at most 50 ms. Below 45 TPS two sends never share a wake-up except right
    after a late one; above, it allows bursts of up to 20-50 ms worth, which the
    sliding-window guard keeps within the limit.
    """
    return min(max(0.9 * interval, 0.020), 0.050)


class Throttle:
    """Rate limiter for one carrier account; one instance shared by all its sessions."""

    __slots__ = (
        "_clock",
        "_guard",
        "_margin",
        "_recent",
        "_tat",
        "granted",
        "interval",
        "tolerance",
        "tps",
        "waited",
        "window_limit",
    )

    def __init__(
        self,
        tps: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        margin: float = MARGIN,
        guard: float = GUARD,
    ) -> None:
        self._margin = margin
        self._guard = guard
        self._clock = clock
        self._tat = -math.inf
        self._recent: deque[float] = deque()
        self.set_rate(tps)
        #: Sends granted, and the total seconds callers of :meth:`acquire` waited (metrics).
        self.granted = 0
        self.waited = 0.0

    def set_rate(self, tps: float) -> None:
        """Change the limit in place (a reload), keeping the sends already made.

        The sliding-window guard keeps the newest ``floor(tps)`` send times, so every
        one-second window that ends after the change, including one that straddles it,
        holds at most the new ``tps``: lowering the rate allows no burst. The GCRA's next
        send time becomes one new interval after the last send, so a raised rate shows
        from the next send on and a lowered one spaces sends at once.
        """
        if not tps > 0:
            raise ValueError(f"tps must be positive, got {tps!r}")
        self.tps = tps
        self.interval = (1.0 + self._margin) / tps
        self.tolerance = tolerance_for(self.interval)
        #: How many sends any one-second window may hold.
        self.window_limit = max(1, math.floor(tps))
        self._recent = deque(self._recent, maxlen=self.window_limit)
        if self._recent:
            self._tat = self._recent[-1] + self.interval

    def attach(self, wake: Callable[[], None]) -> None:
        """``wake()`` is called when a send may conform sooner than :meth:`delay` said
        (a cluster throttle's slots arrived); nothing to do for the local one."""

    def delay(self, now: float | None = None) -> float:
        """Seconds until a send would conform; 0.0 when one may go now."""
        if now is None:
            now = self._clock()
        wait = self._tat - self.tolerance - now
        window = self.window_frees(now)
        return max(wait, window, 0.0)

    def window_frees(self, now: float) -> float:
        """Seconds until the oldest of the last ``window_limit`` sends leaves the sliding
        second (plus the guard): 0.0 while fewer than that many were sent in it."""
        recent = self._recent
        if len(recent) < self.window_limit:
            return 0.0
        wait = recent[0] + 1.0 + self._guard - now
        return wait if wait > 0.0 else 0.0

    @property
    def guard(self) -> float:
        """Seconds beyond one second the ``window_limit``-th previous send must be old."""
        return self._guard

    def widen_guard(self) -> float:
        """The SMSC counted more than ``tps`` in a second we kept to ``tps``: its clock lags
        ours by more than the guard. Widen it one step (up to ``GUARD_MAX``); the new guard."""
        self._guard = min(self._guard + GUARD, max(GUARD_MAX, self._guard))
        return self._guard

    def in_use(self, now: float | None = None) -> int:
        """Sends in the last second (at most ``window_limit``): the rate in use now, for
        ``smppgw ctl status``. Walks the recent sends newest first."""
        since = (self._clock() if now is None else now) - 1.0
        count = 0
        for sent in reversed(self._recent):
            if sent <= since:
                break
            count += 1
        return count

    def take(self, now: float | None = None) -> float:
        """Record a send happening now (after :meth:`delay` said 0); returns its time."""
        if now is None:
            now = self._clock()
        tat = self._tat
        self._tat = (tat if tat > now else now) + self.interval
        self._recent.append(now)
        self.granted += 1
        return now

    async def acquire(self) -> None:
        """Wait until a send conforms, then record it (for callers that send right after)."""
        start = self._clock()
        while True:
            wait = self.delay()
            if wait <= 0.0:
                break
            await asyncio.sleep(wait)
        now = self.take()
        self.waited += now - start
