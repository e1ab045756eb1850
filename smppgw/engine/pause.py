"""The carrier's answer to SMSC throttling (ESME_RTHROTTLED, ESME_RMSGQFUL): pause, probe.

A throttled answer pauses the whole carrier (every session: the SMSC limits the account),
then exactly one submit_sm goes alone as a probe. Accepted, sending resumes at full rate;
throttled again, the next pause is ``throttle_backoff``, then twice as long each time, up
to ``throttle_backoff_max``.

A *lone* throttle (not while a probe is being refused) is an SMSC that counted one submit
too many in its sliding second, usually because of arrival jitter on its side: the pause
then lasts only until the oldest send of our last ``tps`` leaves the second (see
:meth:`smppgw.engine.throttle.Throttle.window_frees`), not a fixed ``throttle_backoff``.
A whole second per such throttle cost carriers 10 % of their contract each time.

Answers to submits written before the current pause began (``epoch``) do not pause again:
a window full of submits all throttled together is one event, not ``window`` of them.
"""

from __future__ import annotations

import math

INF = math.inf


class ThrottlePause:
    """Pause/probe state of one carrier."""

    __slots__ = (
        "_base",
        "_cap",
        "_probe_inflight",
        "_probing",
        "_streak",
        "epoch",
        "level",
        "until",
    )

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
        #: Throttled since the last accepted probe: the next throttle backs off.
        self._streak = False

    def retune(self, base: float, cap: float) -> None:
        """A reload's new back-off bounds; a pause under way keeps its end."""
        self._base = base
        self._cap = cap
        self.level = min(max(self.level, base), cap)

    def wait(self, now: float) -> float | None:
        """Seconds to wait before anything may be sent (INF: until the probe answers)."""
        if self.until > now:
            return self.until - now
        if self._probe_inflight:
            return INF
        return None

    @property
    def streak(self) -> bool:
        """Throttled since the last accepted probe (the next throttle is not lone)."""
        return self._streak

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
            self._streak = False

    def throttled(self, epoch: int, now: float, window_frees: float) -> float | None:
        """A throttled answer to a submit sent in ``epoch``: the pause it starts, or None
        when it was sent before the pause already under way.

        ``window_frees``: seconds until our own sends leave room in the sliding second;
        a lone throttle pauses that long (at most ``level``), repeated ones back off.
        """
        if epoch != self.epoch:
            return None
        self.epoch += 1
        if self._streak:
            pause = self.level
            self.level = min(pause * 2.0, self._cap)
        else:
            pause = min(window_frees, self.level)
            self._streak = True
        self.until = now + pause
        self._probing = True
        return pause
