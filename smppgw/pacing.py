"""``LoopPacer``: at most one event-loop iteration every ``gap`` seconds while there is work.

Why (docs/performance.md, steps 106–108): below its capacity the gateway's CPU a job is
set by how often its processes wake, not by what they do: from 700 jobs/s to flat out
its two processes took ~1.0 core whatever the rate, the store operations or the commits,
because an idle machine lets every packet, PDU and writer answer be handled in an
iteration (and a writer batch) of its own. Here each iteration that starts within
``gap`` of the previous one first sleeps the rest, so whatever arrives meanwhile (MQTT
packets, SMPP PDUs, the writer's answers, timers) is handled together in one iteration
and what it sends goes out together: at 1,400 jobs/s, 0.5 ms measured −17 to −27 % CPU
a job. Flat out an iteration is longer than ``gap`` and the pacer never sleeps.

What it costs: a packet waits at most ``gap`` more at each hop through the loop (a job
passes ~4 before its submit_sm). Timers fire up to ``gap`` late: the throttle's guard is
5 ms (``smppgw.engine.throttle``), a burst's held submits wait at most 1 ms plus this.

Idle, it steps aside: after ``idle_after`` seconds of iterations with nothing in them but
its own call, it stops pacing and the loop sleeps in epoll as without it (the first
packet is handled at once); it looks again every ``IDLE_LOOK`` seconds and paces from the
next iteration that had work.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

#: Seconds between the starts of two iterations, at least, while there is work.
GAP: Final = 0.0005
#: An iteration whose work (besides the pacer's own call) took less than this is empty.
EMPTY: Final = 0.0001
#: Seconds of empty iterations after which the pacer steps aside.
IDLE_AFTER: Final = 0.02
#: While stepped aside, how often it looks whether there is work again.
IDLE_LOOK: Final = 0.05


class LoopPacer:
    """Call :meth:`start` in the running loop; :meth:`stop` to end it."""

    def __init__(self, gap: float = GAP, *, idle_after: float = IDLE_AFTER) -> None:
        self.gap = gap
        self._idle_after = idle_after
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.Handle | None = None
        #: When the last iteration began (the end of the pacer's sleep).
        self._began = 0.0
        #: Since when the iterations have been empty (0: the last one had work).
        self._empty_since = 0.0
        #: Iterations it slept before (for tests).
        self.slept = 0
        #: Times it stepped aside for lack of work.
        self.idled = 0

    @property
    def pacing(self) -> bool:
        """True while it paces (False stopped or stepped aside)."""
        return self._handle is not None and not isinstance(self._handle, asyncio.TimerHandle)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._began = time.monotonic()
        self._empty_since = 0.0
        self._handle = loop.call_soon(self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._loop = None

    def _tick(self) -> None:
        loop = self._loop
        if loop is None:
            return
        now = time.monotonic()
        worked = now - self._began >= EMPTY
        if worked:
            self._empty_since = 0.0
        elif not self._empty_since:
            self._empty_since = now
        elif now - self._empty_since >= self._idle_after:
            # Nothing to do: let the loop sleep in epoll until there is, look again later.
            self.idled += 1
            self._empty_since = 0.0
            self._handle = loop.call_later(IDLE_LOOK, self._look)
            return
        rest = self.gap - (now - self._began)
        if rest > 0:
            time.sleep(rest)  # what arrives meanwhile waits for the next iteration
            self.slept += 1
        self._began = time.monotonic()
        self._handle = loop.call_soon(self._tick)

    def _look(self) -> None:
        """After a pause: pace again (the next iteration tells whether there is work)."""
        if self._loop is None:
            return
        self._began = time.monotonic()
        self._handle = self._loop.call_soon(self._tick)
