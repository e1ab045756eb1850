"""This gateway's lease in the shared store, and the takeover of dead gateways' work.

Every ``lease / 3`` seconds the keeper renews this node's lease (one row in ``nodes``, on
the database's clock) and takes over the work of every node whose lease ran out: its
claimed jobs go back to their lanes, its in-flight ones follow the unknown-outcome rule,
its unpublished events become ours to publish (``PostgresStore.take_over``). A kill -9'd
gateway's jobs are therefore moving again within ``lease`` plus one round.

Fencing: a gateway that cannot renew must stop sending *before* the others may take its
jobs, or a job could leave twice. At two thirds of the lease without a renewal the keeper
holds every carrier (no new submit_sm); at a full lease it asks the gateway to stop
(``on_lost``): its in-memory claims may be someone else's by now. The service manager
restarts it and recovery starts from the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from smppgw.ops.logs import get_logger
from smppgw.store.contract import EventMaker
from smppgw.store.model import StoreError
from smppgw.store.pg import PostgresStore

log = get_logger("smppgw.cluster")


class LeaseKeeper:
    def __init__(
        self,
        store: PostgresStore,
        *,
        resend_on_timeout: Callable[[str], bool],
        make_events: EventMaker,
        on_requeued: Callable[[], None],
        on_events: Callable[[], None],
        on_fenced: Callable[[bool], None],
        on_lost: Callable[[], None],
    ) -> None:
        self._store = store
        self._resend = resend_on_timeout
        self._make_events = make_events
        self._on_requeued = on_requeued
        self._on_events = on_events
        self._on_fenced = on_fenced
        self._on_lost = on_lost
        self.lease = store.lease
        #: Gateways with a fresh lease at the last round (this one included); the rate
        #: limit's fallback share divides by it.
        self.live = 1
        self.fenced = False
        self._renewed = time.monotonic()

    async def run(self) -> None:
        interval = self.lease / 3
        while True:
            await self.round()
            await asyncio.sleep(interval)

    async def round(self) -> None:
        """Renew, take over, count the living; fence or give up when renewals fail."""
        try:
            await self._store.renew_lease()
        except StoreError as exc:
            self._missed(exc)
            return
        self._renewed = time.monotonic()
        if self.fenced:
            self.fenced = False
            self._on_fenced(False)
            log.warning("lease_renewed_unfenced")
        try:
            report = await self._store.take_over(self._resend, self._make_events)
            self.live = max(1, await self._store.live_nodes())
            await self._store.refresh_size()
            await self._store.refresh_held()
        except StoreError as exc:
            log.warning("takeover_failed", error=str(exc))
            return
        if report.requeued or report.resent or report.failed:
            log.warning(
                "taken_over",
                requeued=report.requeued,
                resent=report.resent,
                unknown_outcome=len(report.failed),
            )
            self._on_requeued()
        self._on_events()  # a dead node's events may be ours now

    def _missed(self, exc: StoreError) -> None:
        silent = time.monotonic() - self._renewed
        log.warning("lease_renew_failed", error=str(exc), seconds_since_renewal=round(silent, 1))
        if silent >= self.lease:
            log.error("lease_lost", lease=self.lease)
            self._on_lost()
        elif silent >= self.lease * 2 / 3 and not self.fenced:
            self.fenced = True
            self._on_fenced(True)
            log.warning("lease_expiring_fenced", lease=self.lease)
