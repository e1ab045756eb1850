"""The carrier's answer to SMSC throttling (ESME_RTHROTTLED, ESME_RMSGQFUL): pause, probe.

A throttled answer pauses the whole carrier (every session: the SMSC limits the account),
then exactly one submit_sm goes alone as a probe. Accepted, sending resumes at full rate;
throttled again, the next pause is twice as long, up to ``throttle_backoff_max``.

Answers to submits written before the current pause began (``epoch``) do not pause again:
a window full of submits all throttled together is one event, not ``window`` of them.
"""

from __future__ import annotations

import math

INF = math.inf


class ThrottlePause:
    """Pause/probe state of one carrier."""

    __slots__ = ("_base", "_cap", "_probe_inflight", "_probing", "epoch", "level", "until")

    def __init__(self, base: float, cap: float) -> None:
        self._base = base
        self._cap = cap
        #: ``time.monotonic()`` until which nothing is sent.
        self.until = 0.0
        #: The next back-off pause.
        self.level = base
        #: Counts pauses; a submit remembers the epoch it was sent in.
        self.epoch = 0
        self._probing = False
        self._probe_inflight = False

    def wait(self, now: float) -> float | None:
        """Seconds to wait before anything may be sent (INF: until the probe answers)."""
        if self.until > now:
            return self.until - now
        if self._probe_inflight:
            return INF
        return None

    def paused(self, now: float) -> bool:
        return self.until > now

    def sent(self) -> tuple[int, bool]:
        """A submit_sm goes out now: its epoch, and whether it is the probe."""
        probe = self._probing
        if probe:
            self._probe_inflight = True
        return self.epoch, probe

    def answered(self, probe: bool) -> None:
        """Any answer (or none) to a submit: a probe's answer ends the probe."""
        if probe:
            self._probe_inflight = False
            self._probing = False

    def accepted(self, probe: bool) -> None:
        """An accepted probe ends the throttling: the next pause starts from the base."""
        if probe:
            self.level = self._base

    def throttled(self, epoch: int, now: float) -> float | None:
        """A throttled answer to a submit sent in ``epoch``: the pause it starts, or None
        when it was sent before the pause already under way."""
        if epoch != self.epoch:
            return None
        self.epoch += 1
        pause = self.level
        self.level = min(pause * 2.0, self._cap)
        self.until = now + pause
        self._probing = True
        return pause
