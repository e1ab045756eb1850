"""``LoopPacer``: when an event-loop iteration had nothing to do, wait ``gap`` before the
next poll, so that what arrives meanwhile is handled together.

Why (docs/performance.md, steps 106–108 and 112): below its capacity the gateway's CPU a
job is set by how often its processes wake, not by what they do: an otherwise idle
machine lets every MQTT packet, SMPP PDU and writer answer be handled in an iteration (and
a writer batch, a socket write) of its own. After an empty iteration the pacer sleeps
``gap`` (``time.sleep``: the loop blocked), so the next poll finds what came meanwhile and
the replies to it go out together. Only after an *empty* iteration (less than ``EMPTY``
of work besides the pacer's call): a chain of iterations that work runs unpaced, and flat
out no iteration is empty and the pacer never sleeps. At 1,400 jobs/s a 0.1 ms gap measured
−4 % gateway CPU a job with p99 publish → submit_sm no worse (step 112); 0.5 ms at every
iteration (step 108b) −16 %, but p99 +12 ms.

What it costs: a packet that arrives while the loop is idle waits up to ``gap`` more at
each hop through it (a job passes ~10 before its submit_sm); timers fire up to ``gap``
late (the throttle's guard is 5 ms, ``smppgw.engine.throttle``).

Idle, it steps aside: after ``idle_after`` seconds of empty iterations the loop sleeps in
epoll as without it. Every ``IDLE_LOOK`` seconds it looks whether the loop's thread used
at least ``BUSY`` of that time; only then does it pace again, so an idle gateway wakes
~20 times a second for it and no more.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

#: Seconds slept after an empty iteration.
GAP: Final = 0.0001
#: An iteration whose work (besides the pacer's own call) took less than this is empty.
EMPTY: Final = 0.0001
#: Seconds of empty iterations after which the pacer steps aside.
IDLE_AFTER: Final = 0.02
#: While stepped aside, how often it looks whether there is work again.
IDLE_LOOK: Final = 0.05
#: The share of ``IDLE_LOOK`` the loop's thread must have been on a CPU to pace again.
BUSY: Final = 0.05


class LoopPacer:
    """Call :meth:`start` in the running loop; :meth:`stop` to end it."""

    def __init__(
        self, gap: float = GAP, *, idle_after: float = IDLE_AFTER, idle_look: float = IDLE_LOOK
    ) -> None:
        self.gap = gap
        self._idle_after = idle_after
        self._idle_look = idle_look
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.Handle | None = None
        #: When the pacer's last call ended (the next iteration's work starts there).
        self._began = 0.0
        #: Since when the iterations have been empty (0: the last one had work).
        self._empty_since = 0.0
        #: The loop thread's CPU time when it stepped aside.
        self._cpu_at_rest = 0.0
        #: Times it slept after an empty iteration (for tests and tracing).
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
        self._empty_since = 0.0
        self._began = time.monotonic()
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
        if now - self._began >= EMPTY:
            self._empty_since = 0.0  # the iteration had work: straight on
        else:
            if not self._empty_since:
                self._empty_since = now
            elif now - self._empty_since >= self._idle_after:
                # Nothing to do: the loop sleeps in epoll until there is; look again later.
                self.idled += 1
                self._empty_since = 0.0
                self._cpu_at_rest = time.thread_time()
                self._handle = loop.call_later(self._idle_look, self._look)
                return
            time.sleep(self.gap)  # what arrives meanwhile waits for the next iteration
            self.slept += 1
        self._handle = loop.call_soon(self._tick)
        self._began = time.monotonic()

    def _look(self) -> None:
        """While stepped aside: pace again if the loop has been busy meanwhile."""
        loop = self._loop
        if loop is None:
            return
        if time.thread_time() - self._cpu_at_rest < BUSY * self._idle_look:
            self._cpu_at_rest = time.thread_time()
            self._handle = loop.call_later(self._idle_look, self._look)
            return
        self._empty_since = 0.0
        self._handle = loop.call_soon(self._tick)
        self._began = time.monotonic()
