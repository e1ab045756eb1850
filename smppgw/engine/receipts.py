"""Delivery receipts: find the job a receipt belongs to, and report it after the job's outcome.

The id is looked up in memory (:class:`~smppgw.engine.matching.ReceiptMatcher`), then in the
store (``events.lookup``); a receipt that beat its submit_sm_resp is held, unanswered, for
up to ``receipt_hold`` seconds until its id appears. A receipt is acknowledged
(deliver_sm_resp) only once its event is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from smppgw.engine.context import CarrierContext, CarrierPart
from smppgw.engine.job import SendJob
from smppgw.engine.matching import PartRef, ReceiptMatcher
from smppgw.ops.logs import get_logger
from smppgw.smpp.constants import Status
from smppgw.smpp.pdu import DataSm, DeliverSm
from smppgw.smpp.receipt import ReceiptError, normalize_message_id, parse_receipt

log = get_logger("smppgw.carrier")


class Receipts(CarrierPart):
    """Matches one carrier's receipts to its jobs."""

    __slots__ = ("_active", "matcher", "shared_store")

    def __init__(
        self,
        ctx: CarrierContext,
        matcher: ReceiptMatcher,
        active: dict[str, SendJob],
        *,
        shared_store: bool = False,
    ) -> None:
        """``shared_store``: other gateways write message ids to the same store (a
        cluster): a held receipt's id may appear there, not in this process's memory, so
        the store is asked again while the receipt is held."""
        super().__init__(ctx)
        self.matcher = matcher
        self._active = active
        self.shared_store = shared_store

    async def _find(self, key: str) -> PartRef | None:
        ref = self.matcher.get(key)
        if ref is None:
            hit = await self.events.lookup(self.name, key)
            if hit is not None:
                ref = PartRef(*hit)
        if ref is None:
            # Maybe it beat its submit_sm_resp: hold it (unanswered) until the id appears.
            self.counters.receipts_held += 1
            self.observer.receipt_early(self.name)
            if self.shared_store:
                return await self._hold_shared(key)
            ref = await self.matcher.wait(key, self.config.receipt_hold)
            if ref is None:
                hit = await self.events.lookup(self.name, key)
                if hit is not None:
                    ref = PartRef(*hit)
        return ref

    async def _hold_shared(self, key: str) -> PartRef | None:
        """Hold a receipt whose id another gateway may be committing: wait for it in
        memory for a short while, then ask the store, doubling the wait (20 ms up to
        0.5 s) until ``receipt_hold`` has passed."""
        deadline = time.monotonic() + self.config.receipt_hold
        step = 0.02
        while True:
            remaining = deadline - time.monotonic()
            ref = await self.matcher.wait(key, max(0.0, min(step, remaining)))
            if ref is not None:
                return ref
            hit = await self.events.lookup(self.name, key)
            if hit is not None:
                return PartRef(*hit)
            if remaining <= step:
                return None
            step = min(step * 2, 0.5)

    async def on_receipt(self, short_message: bytes, pdu: DeliverSm | DataSm) -> int:
        """Handle one receipt; the return is its deliver_sm_resp status."""
        c = self.counters
        try:
            receipt = parse_receipt(short_message, pdu.tlvs)
        except ReceiptError as exc:
            # It will never parse; refusing it would only make the SMSC resend it forever.
            c.receipts_unreadable += 1
            log.warning(
                "unreadable receipt acknowledged and dropped",
                carrier=self.name,
                error=str(exc),
                short_message=short_message[:200].hex(),
            )
            return Status.ESME_ROK
        try:
            key = normalize_message_id(receipt.message_id, self.config.receipt_id_base)
        except ValueError:
            key = normalize_message_id(receipt.message_id)
        ref = await self._find(key)
        if ref is None:
            c.receipts_unmatched += 1
            await self.events.unmatched_receipt(self.name, receipt)
            return Status.ESME_ROK
        job = self._active.get(ref.job_id)
        if job is not None and not job.settled:
            # Report the job's submit outcome before its receipts.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.receipt_hold):
                    await job.settled_event().wait()
            if not job.settled:
                # Its outcome is still not durable (the store is failing or slow), so the
                # store has no parts to record the receipt against: acknowledging it now
                # would drop it. Refuse it for now; the SMSC delivers it again later.
                c.receipts_deferred += 1
                log.warning(
                    "receipt deferred: job outcome not yet durable",
                    carrier=self.name,
                    job_id=ref.job_id,
                )
                return Status.ESME_RX_T_APPN
        c.receipts_matched += 1
        await self.events.receipt(self.name, ref.job_id, ref.part, ref.parts, receipt)
        if ref.accepted_at:
            self.observer.receipt_latency(self.name, time.monotonic() - ref.accepted_at)
        if receipt.final:
            self.matcher.discard(key)
        return Status.ESME_ROK
