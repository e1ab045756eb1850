"""The SMSC simulator: a real SMPP 3.4 server for tests, demos and benchmarks.

:class:`Simulator` owns one listening socket, its accounts, the record of accepted
submits, the receipt timeline and (optionally) the HTTP control port. Per-connection
protocol work is in :mod:`smppgw.sim.connection`; this module keeps what is shared by all
connections of one SMSC.

    async with Simulator(SimConfig(accounts=[SimAccount("shop", "pw", tps=50)])) as sim:
        ...  # connect a client to 127.0.0.1:sim.port
        assert sim.submits[0].pdu.destination_addr == "84912345678"
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from smppgw.sim.accounts import AccountState, OutItem
from smppgw.sim.config import Faults, SimAccount, SimConfig, fault_changes
from smppgw.sim.connection import SmscConnection
from smppgw.sim.pdulog import PduLog
from smppgw.sim.receipts import ReceiptFactory, ReceiptJob, Timeline
from smppgw.sim.rejects import DestRejects
from smppgw.sim.stats import Counters, RateMeter
from smppgw.smpp.pdu import DataSm, DeliverSm, SubmitSm
from smppgw.smpp.text import RefCounter, split

__all__ = [
    "Faults",
    "ReceivedSubmit",
    "SimAccount",
    "SimConfig",
    "Simulator",
]


@dataclass(slots=True)
class ReceivedSubmit:
    """An accepted submit_sm / data_sm, exactly as the SMSC received it."""

    account: str
    message_id: str
    pdu: SubmitSm | DataSm
    #: ``time.monotonic()`` when it arrived.
    at: float
    #: False when the no_response fault swallowed its response.
    answered: bool = True
    #: Index in the run's sequence of accepted submits (what ``GET /submits?since=`` uses).
    index: int = 0

    def as_json(self, wall_offset: float) -> dict[str, Any]:
        pdu = self.pdu
        short_message = pdu.short_message if isinstance(pdu, SubmitSm) else b""
        return {
            "index": self.index,
            "account": self.account,
            "message_id": self.message_id,
            "command": pdu.name,
            "source": pdu.source_addr,
            "source_ton": pdu.source_addr_ton,
            "source_npi": pdu.source_addr_npi,
            "destination": pdu.destination_addr,
            "dest_ton": pdu.dest_addr_ton,
            "dest_npi": pdu.dest_addr_npi,
            "data_coding": pdu.data_coding,
            "esm_class": pdu.esm_class,
            "registered_delivery": pdu.registered_delivery,
            "short_message": short_message.hex(),
            "tlvs": [[tag, value.hex()] for tag, value in pdu.tlvs],
            "answered": self.answered,
            "at": self.at,
            "time": self.at + wall_offset,
        }


class Simulator:
    """One simulated SMSC (async context manager: ``start()`` on enter, ``stop()`` on exit)."""

    def __init__(self, config: SimConfig) -> None:
        config.validate()
        self.config = config
        self.name = config.name
        self.accounts: dict[str, AccountState] = {
            a.system_id: AccountState(a) for a in config.accounts
        }
        self.connections: set[SmscConnection] = set()
        #: Accepted submits, oldest first; beyond ``keep_submits`` the oldest half is
        #: dropped and ``submits_base`` says how many came before ``submits[0]``.
        self.submits: list[ReceivedSubmit] = []
        self.submits_base = 0
        self.counters = Counters()
        #: Destinations refused on purpose (ported numbers); live, the control port edits it.
        self.rejects = DestRejects(config.reject_dest)
        self.port = 0
        self.control_port: int | None = None
        self.pdulog: PduLog | None = None
        #: time.time() - loop.time(): turns event-loop times into wall-clock times.
        self.wall_offset = 0.0
        self.receipts = ReceiptFactory(
            config.receipt_mix,
            id_format=config.id_format,
            text_only=config.receipt_text_only,
            other_base=config.receipt_id_other_base,
        )
        self._rate = RateMeter()
        self._mo_refs = RefCounter(8)
        self._next_id = random.randrange(1 << 24, 1 << 31)
        self._refuse_until = 0.0
        self._skew = 0.0
        self._dirty: set[AccountState] = set()
        self._pump_scheduled = False
        self._server: asyncio.base_events.Server | None = None
        self._control: Any = None
        self._housekeeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeline: Timeline | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("Simulator not started")
        return self._loop

    @property
    def faults(self) -> Faults:
        return self.config.faults

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self.wall_offset = time.time() - loop.time()
        # loop.time() - time.monotonic(): 0 for asyncio's own loop, not for every loop.
        self._skew = loop.time() - time.monotonic()
        self._timeline = Timeline(loop)
        if self.config.faults.refuse_binds_for > 0:
            self._refuse_until = loop.time() + self.config.faults.refuse_binds_for
        if self.config.pdu_log:
            self.pdulog = PduLog.acquire(self.config.pdu_log)
        self._server = await loop.create_server(
            lambda: SmscConnection(self), self.config.host, self.config.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.config.control_port is not None:
            from smppgw.sim.control import ControlServer

            self._control = ControlServer(self)
            self.control_port = await self._control.start(
                self.config.control_host, self.config.control_port
            )
        self._housekeeper = loop.create_task(self._housekeep(), name=f"sim-{self.name}-timers")

    async def stop(self, unbind_timeout: float = 1.0) -> None:
        """Stop listening, unbind every client (waiting briefly for unbind_resp), close."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        if self._control is not None:
            await self._control.stop()
            self._control = None
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeper
            self._housekeeper = None
        if self._timeline is not None:
            self._timeline.close()
        connections = list(self.connections)
        if connections:
            await asyncio.gather(*(c.unbind(unbind_timeout) for c in connections))
        for conn in list(self.connections):
            conn.abort()
        # Let the transports report connection_lost before the server is awaited.
        await asyncio.sleep(0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        if self.pdulog is not None:
            self.pdulog.release()
            self.pdulog = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _housekeep(self) -> None:
        config = self.config
        candidates = [0.25]
        if config.enquire_link_interval > 0:
            candidates.append(config.enquire_link_interval / 4)
        if config.deliver_timeout > 0:
            candidates.append(config.deliver_timeout / 4)
        interval = max(0.01, min(candidates))
        loop = self.loop
        while True:
            now = loop.time()
            self._rate.sample(now, self.counters.submits_accepted)
            for conn in list(self.connections):
                conn.check_timers(now)
            if self.pdulog is not None:
                self.pdulog.flush()
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ connections
    def connection_opened(self, conn: SmscConnection) -> None:
        self.connections.add(conn)

    def connection_closed(self, conn: SmscConnection) -> None:
        self.connections.discard(conn)

    def refusing_binds(self) -> bool:
        return self._refuse_until > 0 and self.loop.time() < self._refuse_until

    # ------------------------------------------------------------------ submits
    def next_message_id(self) -> str:
        self._next_id += 1
        if self.config.id_format == "hex":
            return format(self._next_id, "X")
        return str(self._next_id)

    def accept(
        self, account: AccountState, pdu: SubmitSm | DataSm, now: float, answered: bool
    ) -> str:
        """Record an accepted submit; returns its message id."""
        message_id = self.next_message_id()
        submits = self.submits
        if len(submits) >= self.config.keep_submits:
            drop = len(submits) // 2 or 1
            del submits[:drop]
            self.submits_base += drop
        submits.append(
            ReceivedSubmit(
                account.account.system_id,
                message_id,
                pdu,
                now - self._skew,
                answered,
                self.submits_base + len(submits),
            )
        )
        if answered:
            self.counters.submits_accepted += 1
        else:
            self.counters.submits_unanswered += 1
        return message_id

    @property
    def monotonic_wall_offset(self) -> float:
        """time.time() - time.monotonic(), to show ``ReceivedSubmit.at`` as a wall time."""
        return self.wall_offset + self._skew

    def submits_since(self, since: int, limit: int = 10_000) -> list[ReceivedSubmit]:
        """Accepted submits with index >= ``since`` (those still kept), at most ``limit``."""
        start = max(0, since - self.submits_base)
        return self.submits[start : start + limit]

    # ------------------------------------------------------------------ deliveries
    def schedule_receipt(self, job: ReceiptJob, account: AccountState) -> None:
        """Called by a connection while it handles a read (see ``_receipt_due``)."""
        delay = self.config.receipt_delay
        if delay <= 0:
            # Queued only: the connection pumps the account when the read is handled, so
            # the responses and the receipts of one read leave in one write.
            self._receipt_due((job, account), pump=False)
        else:
            assert self._timeline is not None
            self._timeline.at(self.loop.time() + delay, self._receipt_due, (job, account))

    def _receipt_due(self, arg: tuple[ReceiptJob, AccountState], pump: bool = True) -> None:
        job, account = arg
        pdu = self.receipts.build(job, self.wall_offset + self.loop.time())
        if pdu is None:
            return
        account.enqueue(OutItem("receipt", pdu, account))
        if pump:
            self._touch(account)

    def _touch(self, account: AccountState) -> None:
        """Pump ``account`` soon: once for all the deliveries queued in this loop turn."""
        self._dirty.add(account)
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.loop.call_soon(self._pump_dirty)

    def _pump_dirty(self) -> None:
        self._pump_scheduled = False
        dirty = list(self._dirty)
        self._dirty.clear()
        for account in dirty:
            account.pump()

    def retry_later(self, item: OutItem, delay: float) -> None:
        """A deliver_sm was refused or not answered: send it again, unless out of attempts."""
        if item.attempts >= self.config.deliver_attempts:
            self.counters.count_failed(item.kind)
            return
        account = item.account
        if delay <= 0 or self._timeline is None or self._timeline.closed:
            account.enqueue(item, front=True)
            self._touch(account)
        else:
            self._timeline.at(self.loop.time() + delay, self._requeue, (item, account))

    def _requeue(self, arg: tuple[OutItem, AccountState]) -> None:
        item, account = arg
        account.enqueue(item, front=True)
        self._touch(account)

    async def send_mo(
        self,
        system_id: str | None,
        source: str,
        destination: str,
        text: str,
        coding: str = "auto",
    ) -> int:
        """Queue a mobile-originated message for a receiver of ``system_id`` (default: the
        first account); long texts go as UDH-concatenated parts. Returns the part count."""
        account = self.accounts[system_id] if system_id else next(iter(self.accounts.values()))
        ref = self._mo_refs.next(destination)
        parts = split(text, coding=coding, concat="udh8", ref=ref, max_parts=255)
        for part in parts:
            pdu = DeliverSm(
                source_addr_ton=_ton(source),
                source_addr_npi=0 if _ton(source) == 5 else 1,
                source_addr=source,
                dest_addr_ton=_ton(destination),
                dest_addr_npi=0 if _ton(destination) == 5 else 1,
                destination_addr=destination,
                esm_class=part.esm_class,
                data_coding=part.data_coding,
                short_message=part.short_message,
                tlvs=list(part.tlvs),
            )
            account.enqueue(OutItem("mo", pdu, account))
        account.pump()
        return len(parts)

    # ------------------------------------------------------------------ control
    def set_faults(self, **changes: Any) -> None:
        """Change fault injection now; ``refuse_binds_for`` counts from this call."""
        checked = fault_changes(changes)
        self.config.faults = dataclasses.replace(self.config.faults, **checked)
        if "refuse_binds_for" in checked:
            seconds = checked["refuse_binds_for"]
            self._refuse_until = self.loop.time() + seconds if seconds > 0 else 0.0

    def stats(self) -> dict[str, Any]:
        now = self.loop.time() if self._loop is not None else 0.0
        counters = self.counters
        pending = {name: len(a.pending) for name, a in self.accounts.items()}
        return {
            "name": self.name,
            "port": self.port,
            "connections": len(self.connections),
            "binds": sum(len(a.binds) for a in self.accounts.values()),
            **counters.as_dict(),
            "accepted_per_second": round(self._rate.rate(now, counters.submits_accepted), 1),
            "deliveries_queued": sum(pending.values()),
            "deliveries_outstanding": sum(len(c.outstanding) for c in self.connections),
            "accounts": {
                name: {
                    "binds": len(a.binds),
                    "receivers": len(a.receivers),
                    "tps": a.account.tps,
                    "queued": pending[name],
                }
                for name, a in self.accounts.items()
            },
            "faults": dataclasses.asdict(self.config.faults),
            "reject_dest": self.rejects.as_json(),
        }


def _ton(address: str) -> int:
    """TON for an address: international (1) for long numbers, unknown (0) for short codes,
    alphanumeric (5) otherwise."""
    if address.isascii() and address.isdigit():
        return 1 if len(address) > 8 else 0
    return 5
