"""``carriers[].max_binds``: the account's binds capped across the cluster.

Carriers refuse binds over an account's limit (ESME_RALYBND, or worse, a silent close); a
third gateway started on a two-bind account would storm the SMSC with refused binds and
might lock the account. Each bind takes a slot in the shared store first (a row in
``bind_slots``, held as long as its node's lease), and a keeper that finds none waits and
looks again every ``POLL`` seconds. A killed gateway's slots come free with its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from smppgw.ops.logs import get_logger
from smppgw.smpp.session import BindGate
from smppgw.store.model import StoreError
from smppgw.store.pg import PostgresStore

log = get_logger("smppgw.cluster")

#: Seconds between looks for a free bind slot.
POLL = 1.0


class BindSlots:
    def __init__(self, store: PostgresStore, *, poll: float = POLL) -> None:
        self._store = store
        self._poll = poll

    def gate(self, carrier: str, max_binds: Callable[[], int]) -> BindGate:
        """The gate of one carrier's session keepers (``max_binds()`` read at each bind,
        so a reload applies)."""

        async def acquire() -> Callable[[], Awaitable[None]]:
            waiting = False
            while True:
                try:
                    slot = await self._store.acquire_bind(carrier, max_binds())
                except StoreError as exc:
                    log.warning("bind_slot_unavailable", carrier=carrier, error=str(exc))
                    slot = None
                if slot is not None:
                    break
                if not waiting:
                    waiting = True
                    log.info("bind_slot_wait", carrier=carrier, max_binds=max_binds())
                await asyncio.sleep(self._poll)
            if waiting:
                log.info("bind_slot_taken", carrier=carrier, slot=slot)
            taken = slot

            async def release() -> None:
                with contextlib.suppress(StoreError):  # the lease frees it anyway
                    await self._store.release_bind(carrier, taken)

            return release

        return acquire
