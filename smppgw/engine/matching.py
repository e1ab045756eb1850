"""Message id → (job, part, parts): how a delivery receipt finds the job it belongs to.

Receipts quote the SMSC's message id, often in another base or case than the
submit_sm_resp did, so both sides are normalised per carrier before they meet here (see
``smppgw.smpp.receipt.normalize_message_id``). The map is an LRU bounded in entries: the
gateway's store holds every mapping durably and answers misses through
``CarrierEvents.lookup``; memory only needs the recent ones, which is where nearly all
receipts land.

A receipt can beat its submit_sm_resp (the SMSC delivers before our read loop sees the
response, or the response travels on another bind). :meth:`ReceiptMatcher.wait` lets the
carrier hold such a receipt until the id shows up, instead of calling it unmatched.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import NamedTuple

DEFAULT_CAPACITY = 200_000


class PartRef(NamedTuple):
    job_id: str
    #: 0-based part index, as everywhere in code (the UDH / SAR sequence and texts
    #: for people are 1-based).
    part: int
    parts: int
    #: ``time.monotonic()`` when the SMSC accepted the part; 0.0 when not known here
    #: (found in the store after a restart).
    accepted_at: float = 0.0


class ReceiptMatcher:
    """Bounded map from normalised message id to the part it was assigned to."""

    __slots__ = ("_map", "_waiters", "capacity")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._map: OrderedDict[str, PartRef] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[PartRef]]] = {}

    def __len__(self) -> int:
        return len(self._map)

    def add(self, message_id: str, ref: PartRef) -> None:
        """Remember an accepted part, and release receipts held waiting for its id."""
        entries = self._map
        entries[message_id] = ref
        entries.move_to_end(message_id)
        if len(entries) > self.capacity:
            entries.popitem(last=False)  # the store still has it (``events.lookup``)
        waiters = self._waiters.pop(message_id, None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(ref)

    def get(self, message_id: str) -> PartRef | None:
        ref = self._map.get(message_id)
        if ref is not None:
            self._map.move_to_end(message_id)
        return ref

    def discard(self, message_id: str) -> None:
        """Forget a part whose final receipt was handled: nothing more will come for it,
        and a long-running gateway should not keep 200k finished ids in memory."""
        self._map.pop(message_id, None)

    async def wait(self, message_id: str, timeout: float) -> PartRef | None:
        """The part for ``message_id``, waiting up to ``timeout`` seconds for it to appear."""
        ref = self.get(message_id)
        if ref is not None or timeout <= 0:
            return ref
        fut: asyncio.Future[PartRef] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(message_id, []).append(fut)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(message_id)
            if waiters is not None:
                if fut in waiters:
                    waiters.remove(fut)
                if not waiters:
                    del self._waiters[message_id]

    @property
    def held(self) -> int:
        """Receipts currently waiting for their submit_sm_resp."""
        return sum(len(w) for w in self._waiters.values())
