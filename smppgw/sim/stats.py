"""The simulator's counters, as plain attributes (incremented on the hot path)."""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Counters:
    """Everything ``GET /stats`` reports, except what is computed from live state."""

    binds_total: int = 0
    binds_refused: int = 0
    unbinds: int = 0
    submits_accepted: int = 0
    submits_throttled: int = 0
    submits_rejected: int = 0
    #: Of ``submits_rejected``: refused by the destination table (``--reject-dest``).
    submits_dest_refused: int = 0
    submits_unanswered: int = 0
    drops: int = 0
    receipts_sent: int = 0
    receipts_acknowledged: int = 0
    receipts_failed: int = 0
    mo_sent: int = 0
    mo_acknowledged: int = 0
    mo_failed: int = 0
    enquire_links_sent: int = 0
    link_timeouts: int = 0
    generic_nacks: int = 0
    frame_errors: int = 0

    def count_sent(self, kind: str) -> None:
        if kind == "receipt":
            self.receipts_sent += 1
        else:
            self.mo_sent += 1

    def count_acked(self, kind: str) -> None:
        if kind == "receipt":
            self.receipts_acknowledged += 1
        else:
            self.mo_acknowledged += 1

    def count_failed(self, kind: str) -> None:
        if kind == "receipt":
            self.receipts_failed += 1
        else:
            self.mo_failed += 1

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RateMeter:
    """Accepted submits in the last second, from samples of a running total.

    Sampling the total a few times a second costs nothing per submit, unlike keeping a
    timestamp per submit.
    """

    def __init__(self, span: float = 1.0) -> None:
        self.span = span
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float, total: int) -> None:
        samples = self._samples
        samples.append((now, total))
        while len(samples) > 2 and samples[1][0] <= now - self.span:
            samples.popleft()

    def rate(self, now: float, total: int) -> float:
        """Events per second over (about) the last ``span`` seconds."""
        samples = self._samples
        if not samples:
            return 0.0
        then, old_total = samples[0]
        for t, value in samples:
            if t >= now - self.span:
                break
            then, old_total = t, value
        elapsed = now - then
        if elapsed <= 0:
            return 0.0
        return (total - old_total) / max(elapsed, self.span)
