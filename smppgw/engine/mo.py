"""Mobile-originated messages: parts reassembled, each message reported once, durably.

A non-final part is acknowledged once it is in the reassembler (memory): holding its
deliver_sm_resp until the last part would stall an SMSC that windows its deliver_sm, and
could deadlock one with a window of 1. The cost: a crash between parts loses the parts
already acknowledged. Messages whose missing parts never come are delivered partial (never
dropped) after ``reassembly_timeout``, or early when reassembly memory is full.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from functools import partial

from smppgw.engine.context import CarrierContext, CarrierPart
from smppgw.engine.tasks import Background
from smppgw.ops.logs import get_logger
from smppgw.smpp.constants import Status
from smppgw.smpp.pdu import DataSm, DeliverSm
from smppgw.smpp.text import MoPart, MoRefused, Reassembler, decode_mo

log = get_logger("smppgw.carrier")

#: Completed multi-part MO texts kept while their inbound event is retried.
MO_UNSENT_MAX = 1000


class MoHandler(CarrierPart):
    """One carrier's MO: reassembly state, and the housekeeping that bounds it."""

    __slots__ = ("_background", "_evicted", "_unsent", "reassembler")

    def __init__(
        self, ctx: CarrierContext, background: Background, reassembly_timeout: float
    ) -> None:
        super().__init__(ctx)
        self._background = background
        self.reassembler = Reassembler(reassembly_timeout)
        #: Set when the reassembler evicted messages: the housekeeper delivers them now,
        #: since they hold reassembly room until it does.
        self._evicted = asyncio.Event()
        self._unsent: OrderedDict[tuple[str, str, int, int], str] = OrderedDict()

    async def on_mo(self, short_message: bytes, pdu: DeliverSm | DataSm) -> int:
        """Handle one MO part; the return is its deliver_sm_resp status."""
        c = self.counters
        mo = decode_mo(short_message, pdu.data_coding, pdu.esm_class, pdu.tlvs)
        source, destination = pdu.source_addr, pdu.destination_addr
        c.mo_parts += 1
        self.observer.mo_part(self.name)
        if mo.concat is None:
            await self.events.inbound(self.name, source, destination, mo.text)
            c.mo_messages += 1
            return Status.ESME_ROK
        ref, total, _seq = mo.concat
        slot = (source, destination, ref, total)
        text = self._unsent.get(slot)
        if text is None:
            try:
                text = self._add_part(source, destination, mo)
            except MoRefused as exc:
                return self._refused(exc)
            if text is None:
                return Status.ESME_ROK
            # Complete: keep it until the event is durable, so a failed event plus the
            # SMSC's redelivery of this part does not start a fresh reassembly.
            self._unsent[slot] = text
            while len(self._unsent) > MO_UNSENT_MAX:
                self._unsent.popitem(last=False)
        await self.events.inbound(self.name, source, destination, text)
        self._unsent.pop(slot, None)
        c.mo_messages += 1
        return Status.ESME_ROK

    def _add_part(self, source: str, destination: str, mo: MoPart) -> str | None:
        """Into the reassembler; counts (and has delivered soon) what it had to evict."""
        reassembler = self.reassembler
        before = reassembler.evicted
        try:
            return reassembler.add((source, destination), mo)
        finally:
            evicted = reassembler.evicted - before
            if evicted:
                self.counters.mo_evicted += evicted
                self.observer.mo_evicted(self.name, evicted)
                self._evicted.set()

    def _refused(self, exc: MoRefused) -> int:
        """The answer to an MO part the reassembler would not hold: a part too large is
        malformed (ESME_RINVMSGLEN: the SMSC should not send it again); with reassembly
        memory full, ESME_RX_T_APPN asks the SMSC to deliver it later, so nothing is lost.
        Logged at the 1st, 2nd, 4th, 8th... refusal: a flood must not flood the log."""
        c = self.counters
        c.mo_parts_refused += 1
        self.observer.mo_refused(self.name, exc.reason)
        if c.mo_parts_refused & (c.mo_parts_refused - 1) == 0:
            log.warning(
                "MO part refused",
                carrier=self.name,
                reason=exc.reason,
                error=str(exc),
                refused=c.mo_parts_refused,
            )
        return Status.ESME_RINVMSGLEN if exc.reason == "too_large" else Status.ESME_RX_T_APPN

    async def housekeeping(self) -> None:
        """Deliver MO messages whose missing parts never came (partial, never dropped), and
        those evicted early, as soon as there are any. Runs until cancelled."""
        interval = max(0.05, min(5.0, self.reassembler.timeout / 4))
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._evicted.wait()
            self._evicted.clear()
            for (source, destination), text in self.reassembler.expire():
                self.counters.mo_messages += 1
                await self._background.durably(
                    partial(self.events.inbound, self.name, source, destination, text), "mo"
                )
