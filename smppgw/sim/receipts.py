"""Delivery receipts: what the simulated handset network "reports", and when.

A receipt is decided when it falls due (state drawn from the configured mix), built as the
deliver_sm real SMSCs send (esm_class 0x04, the SMPP 3.4 Appendix B text, and unless told
otherwise the receipted_message_id / message_state TLVs), then handed to the account's
delivery queue. :class:`Timeline` holds everything that must happen later (receipts and
deliver_sm retries) in one heap behind one timer, so 20,000 receipts a second cost one
event-loop callback per batch instead of one per receipt.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from smppgw.sim.config import RECEIPT_STATES
from smppgw.smpp.constants import ESM_DELIVERY_RECEIPT, Tag
from smppgw.smpp.pdu import DeliverSm
from smppgw.smpp.receipt import format_receipt_text

#: States a receipt reports as success; registered_delivery 2 asks for failures only.
SUCCESS_STATES = frozenset({"DELIVRD", "ACCEPTD", "ENROUTE"})
FINAL_STATES = frozenset({"DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "REJECTD", "UNKNOWN"})
_ERR = {state: ("000" if state in SUCCESS_STATES else "001") for state in RECEIPT_STATES}
#: Text-form data_codings whose first octets can be copied into the ``text:`` field as is.
_TEXT_CODINGS = frozenset({0, 1, 3})


class ReceiptJob:
    """What the SMSC remembers of an accepted submit until its receipt is sent."""

    __slots__ = (
        "account",
        "dest_npi",
        "dest_ton",
        "destination",
        "message_id",
        "registered_delivery",
        "source",
        "source_npi",
        "source_ton",
        "submitted",
        "text",
    )

    def __init__(
        self,
        account: str,
        message_id: str,
        submitted: float,
        source: str,
        source_ton: int,
        source_npi: int,
        destination: str,
        dest_ton: int,
        dest_npi: int,
        text: bytes,
        registered_delivery: int,
    ) -> None:
        self.account = account
        self.message_id = message_id
        self.submitted = submitted  # wall-clock seconds
        self.source = source
        self.source_ton = source_ton
        self.source_npi = source_npi
        self.destination = destination
        self.dest_ton = dest_ton
        self.dest_npi = dest_npi
        self.text = text
        self.registered_delivery = registered_delivery


class _MinuteClock:
    """Local datetime of a wall-clock time to the minute (all a receipt shows), cached."""

    __slots__ = ("_minute", "_value")

    def __init__(self) -> None:
        self._minute = -1
        self._value = datetime.fromtimestamp(0)

    def __call__(self, wall: float) -> datetime:
        minute = int(wall // 60)
        if minute != self._minute:
            self._minute = minute
            self._value = datetime.fromtimestamp(minute * 60)
        return self._value


class ReceiptFactory:
    """Builds receipt deliver_sm PDUs from jobs, following the SMSC's receipt options."""

    def __init__(
        self,
        mix: dict[str, float],
        id_format: str = "hex",
        text_only: bool = False,
        other_base: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.id_format = id_format
        self.text_only = text_only
        self.other_base = other_base
        self._rng = rng or random.Random()
        self._submit_clock = _MinuteClock()
        self._done_clock = _MinuteClock()
        self.set_mix(mix)

    def set_mix(self, mix: dict[str, float]) -> None:
        states = [s for s, w in mix.items() if w > 0]
        total = sum(mix[s] for s in states)
        acc = 0.0
        self._states = states
        self._cumulative: list[float] = []
        for state in states:
            acc += mix[state] / total
            self._cumulative.append(acc)
        self._cumulative[-1] = 1.0

    def pick_state(self) -> str:
        states = self._states
        if len(states) == 1:
            return states[0]
        return states[bisect.bisect_right(self._cumulative, self._rng.random())]

    def receipt_id(self, message_id: str) -> str:
        """The id as this SMSC writes it in receipts (maybe in the other base)."""
        if not self.other_base:
            return message_id
        if self.id_format == "hex":
            return str(int(message_id, 16))
        return format(int(message_id), "X")

    def build(self, job: ReceiptJob, now: float) -> DeliverSm | None:
        """The receipt for ``job`` at wall time ``now``; None when it was not asked for."""
        state = self.pick_state()
        if job.registered_delivery & 0x03 == 2 and state in SUCCESS_STATES:
            return None  # "failure only" receipts
        rid = self.receipt_id(job.message_id)
        short_message = format_receipt_text(
            rid,
            state,
            self._submit_clock(job.submitted),
            self._done_clock(now),
            err=_ERR[state],
            text=job.text.decode("latin-1"),
        )
        pdu = DeliverSm(
            source_addr_ton=job.dest_ton,
            source_addr_npi=job.dest_npi,
            source_addr=job.destination,
            dest_addr_ton=job.source_ton,
            dest_addr_npi=job.source_npi,
            destination_addr=job.source,
            esm_class=ESM_DELIVERY_RECEIPT,
            short_message=short_message,
        )
        if not self.text_only:
            tlvs: list[tuple[int, bytes]] = [
                (Tag.RECEIPTED_MESSAGE_ID, rid.encode("ascii") + b"\x00"),
                (Tag.MESSAGE_STATE, bytes((RECEIPT_STATES[state],))),
            ]
            if state not in SUCCESS_STATES:
                tlvs.append((Tag.NETWORK_ERROR_CODE, b"\x03\x00\x01"))  # GSM, error 1
            pdu.tlvs = tlvs
        return pdu


def receipt_text_field(short_message: bytes, data_coding: int, esm_class: int) -> bytes:
    """The first 20 octets of a text message for the receipt's ``text:`` field."""
    if data_coding not in _TEXT_CODINGS or esm_class & 0x40:
        return b""
    return short_message[:20]


class Timeline:
    """Callbacks due at event-loop times, behind one event-loop timer.

    Most entries come with a constant delay (the receipt delay), so they arrive in time
    order: those go in a FIFO at O(1); the rest (retries, a delay changed at run time) in
    a heap. Everything due is run in one batch.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._fifo: deque[tuple[float, Callable[[Any], None], Any]] = deque()
        self._heap: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.closed = False

    def __len__(self) -> int:
        return len(self._fifo) + len(self._heap)

    def at(self, when: float, callback: Callable[[Any], None], arg: Any) -> None:
        fifo = self._fifo
        if not fifo or when >= fifo[-1][0]:
            fifo.append((when, callback, arg))
        else:
            heapq.heappush(self._heap, (when, next(self._seq), callback, arg))
        if self._timer is None or when < self._timer_at:
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self.closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        fifo = self._fifo
        heap = self._heap
        # Everything due within the next millisecond goes out in this batch.
        edge = self._loop.time() + 0.001
        while fifo and fifo[0][0] <= edge:
            _, callback, arg = fifo.popleft()
            callback(arg)
        while heap and heap[0][0] <= edge:
            _, _, callback, arg = heapq.heappop(heap)
            callback(arg)
        if fifo or heap:
            nexts = [q[0][0] for q in (fifo, heap) if q]
            self._arm(min(nexts))

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._fifo.clear()
        self._heap.clear()
