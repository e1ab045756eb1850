"""One job while a carrier holds it: its parts, where they are, and how it ended.

Shared by the carrier's parts (lanes, results, receipts), so it lives on its own: each of
them changes only the fields it owns, and none needs to import another to see a job.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from smppgw.engine.message import OutboundMessage
from smppgw.smpp.pdu import SubmitSm
from smppgw.smpp.session import Session


@dataclass(eq=False, slots=True)
class SendJob:
    message: OutboundMessage
    #: Arrival order, across lanes: a requeued job goes back ahead of younger ones.
    order: int
    attempt: int
    lane: int
    pdus: list[SubmitSm] | None = None
    #: Part indexes (0-based) still to send, ascending.
    todo: list[int] = field(default_factory=list)
    ids: list[str | None] = field(default_factory=list)
    #: Normalised ``ids`` (the receipt matching keys), computed once when accepted.
    keys: list[str] = field(default_factory=list)
    accepted: int = 0
    inflight: int = 0
    #: The session its parts go through (the one its first part used, while it stays bound).
    session: Session | None = None
    started: bool = False
    queued: bool = False
    retry: asyncio.TimerHandle | None = None
    failure: tuple[str, str, str] | None = None
    reported: bool = False
    #: True once the job's submitted/finished event has returned.
    settled: bool = False
    #: Set with ``settled`` for a receipt waiting for it (:meth:`settled_event`); made
    #: only then: an Event per job was ~0.5 µs of the event loop, and few receipts wait.
    _settled_event: asyncio.Event | None = None
    #: ``events.sending`` returned for this job: its parts may go out.
    armed: bool = False

    def settled_event(self) -> asyncio.Event:
        """An Event set when (or already if) the job's outcome event has returned."""
        event = self._settled_event
        if event is None:
            event = self._settled_event = asyncio.Event()
            if self.settled:
                event.set()
        return event

    def settle(self) -> None:
        """The job's outcome event has returned (its receipts may be recorded now)."""
        self.settled = True
        if self._settled_event is not None:
            self._settled_event.set()

    @property
    def parts(self) -> int:
        return len(self.pdus) if self.pdus is not None else 0

    @property
    def job_id(self) -> str:
        return self.message.job_id
