"""Per-account state on the simulated SMSC: throttle window, binds, deliveries waiting.

An SMSC limits an *account*, not a connection: a client that opens three binds does not get
three times the TPS. So the sliding window and the queue of receipts / MO waiting for a
receiver live here, shared by every bind of the account.
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import TYPE_CHECKING

from smppgw.sim.config import SimAccount
from smppgw.smpp.pdu import DeliverSm

if TYPE_CHECKING:
    from smppgw.sim.connection import SmscConnection


class SlidingWindow:
    """At most ``limit`` events in any ``span``-second window (a true sliding window).

    A token bucket would let a burst through after an idle spell; carriers count
    submits in the last second, so this keeps the timestamps of the accepted ones and
    compares. Memory is bounded by ``limit``.
    """

    __slots__ = ("_times", "limit", "span")

    def __init__(self, tps: float) -> None:
        if tps >= 1:
            self.limit = math.floor(tps)
            self.span = 1.0
        else:  # below 1/s: one message per 1/tps seconds
            self.limit = 1
            self.span = 1.0 / tps
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Whether one more event fits at ``now``; records it when it does."""
        times = self._times
        edge = now - self.span
        while times and times[0] <= edge:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True


class OutItem:
    """A deliver_sm the SMSC owes a client (receipt or MO), with its delivery attempts."""

    __slots__ = ("account", "attempts", "kind", "pdu")

    def __init__(self, kind: str, pdu: DeliverSm, account: AccountState) -> None:
        self.kind = kind  # "receipt" | "mo"
        self.pdu = pdu
        self.account = account
        self.attempts = 0


class AccountState:
    """Live state of one account: its binds, its throttle and its undelivered deliver_sm."""

    __slots__ = ("_rr", "_seen", "account", "binds", "pending", "receivers", "window")

    def __init__(self, account: SimAccount) -> None:
        self.account = account
        #: When the rate limiter last saw a submit (``arrival_jitter``: never goes back).
        self._seen = -math.inf
        self.window = SlidingWindow(account.tps) if account.tps is not None else None
        self.binds: list[SmscConnection] = []
        self.receivers: list[SmscConnection] = []
        self.pending: deque[OutItem] = deque()
        self._rr = 0

    def set_tps(self, tps: float | None) -> None:
        self.account.tps = tps
        self.window = SlidingWindow(tps) if tps is not None else None

    def seen_at(self, now: float, jitter: float) -> float:
        """When the account's rate limiter sees a submit that arrived at ``now``: up to
        ``jitter`` seconds later, but never before the one ahead of it (a FIFO queue)."""
        if jitter <= 0.0:
            return now
        self._seen = max(self._seen, now + random.uniform(0.0, jitter))
        return self._seen

    def add_bind(self, conn: SmscConnection, receives: bool) -> None:
        self.binds.append(conn)
        if receives:
            self.receivers.append(conn)

    def remove_bind(self, conn: SmscConnection) -> None:
        if conn in self.binds:
            self.binds.remove(conn)
        if conn in self.receivers:
            self.receivers.remove(conn)

    def enqueue(self, item: OutItem, front: bool = False) -> None:
        if front:
            self.pending.appendleft(item)
        else:
            self.pending.append(item)

    def pump(self) -> None:
        """Hand waiting deliver_sm to receivers with room in their window, one each in turn."""
        pending = self.pending
        receivers = self.receivers
        if not pending or not receivers:
            return
        count = len(receivers)
        full = 0
        while pending and full < count:
            self._rr = (self._rr + 1) % count
            conn = receivers[self._rr]
            if conn.deliver_room() > 0:
                conn.send_deliver(pending.popleft())
                full = 0
            else:
                full += 1  # resumes when a response frees a window
