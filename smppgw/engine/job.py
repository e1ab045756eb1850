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
    #: Set once the job's submitted/finished event has returned.
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    #: ``events.sending`` returned for this job: its parts may go out.
    armed: bool = False

    @property
    def parts(self) -> int:
        return len(self.pdus) if self.pdus is not None else 0

    @property
    def job_id(self) -> str:
        return self.message.job_id
