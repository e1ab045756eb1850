"""``StoreAPI``: what the gateway needs from a store, whichever backend holds it.

Two classes implement it: ``smppgw.store.api.Store`` (SQLite, the embedded default) and
``smppgw.store.pg.PostgresStore`` (PostgreSQL, shared by a cluster). The pipeline and the
gateway are typed against this protocol, so an operation added to one backend and not the
other is a type error (mypy), not a surprise in production; tests/store runs the same
suite against both. Docstrings of the contract live on ``Store``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from smppgw.pipeline.marketing import Go, Hold, MarketingGate, Reject
from smppgw.store.model import (
    ConsentChange,
    ConsentRecord,
    DeadEvent,
    JobState,
    JobView,
    OutboxEvent,
    RecoveryReport,
    ReplyWindow,
    StoredJob,
    StoreStats,
    Usage,
)

EventMaker = Callable[[JobView, str], list[OutboxEvent]]
MoEventMaker = Callable[[ReplyWindow | None], list[OutboxEvent]]
#: Makes the held form of a job (``smppgw.store.ops.HoldMaker``).
HoldMaker = Callable[[StoredJob, float, str], StoredJob]
#: What ``add_admitted`` did with one job (``smppgw.store.ops.Admission``).
Admission = bool | None | Reject | Hold


class StoreAPI(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # jobs in
    async def add_jobs(self, jobs: Sequence[StoredJob]) -> list[bool]: ...
    async def add_counted(
        self, jobs: Sequence[StoredJob], usage: Sequence[Usage | None]
    ) -> list[bool | None]: ...
    async def tenant_usage(self, tenant: str, day: str) -> int: ...
    async def count_waiting(self, prefix: str | None) -> int: ...
    async def add_rejected(
        self,
        job_id: str,
        events: Sequence[OutboxEvent],
        *,
        carrier: str | None = None,
        code: str | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        received_at: float = 0.0,
    ) -> bool: ...

    # the send path
    async def claim(self, carrier: str, limit: int, now: float) -> list[StoredJob]: ...
    async def release(self, job_ids: Sequence[str]) -> int: ...
    async def release_unsent(self, carrier: str | None = None) -> int: ...
    async def mark_in_flight(self, job_ids: Sequence[str]) -> None: ...
    async def retry_later(self, job_id: str, attempt: int, next_attempt: float) -> bool: ...
    async def next_due(self, carrier: str) -> float | None: ...
    async def mark_submitted(
        self,
        job_id: str,
        carrier: str,
        normalized_ids: Sequence[str],
        raw_ids: Sequence[str],
        final: bool,
        events: Sequence[OutboxEvent],
    ) -> None: ...
    async def finish(
        self, job_id: str, status: str, events: Sequence[OutboxEvent], *, code: str | None = None
    ) -> bool: ...

    # receipts
    async def lookup(self, carrier: str, normalized_id: str) -> tuple[str, int, int] | None: ...
    async def apply_receipt(
        self, job_id: str, part: int, state: str, make_events: EventMaker
    ) -> str | None: ...

    # outbox
    async def add_events(self, events: Sequence[OutboxEvent]) -> list[int]: ...
    async def pending_events(self, limit: int, after_id: int = 0) -> list[OutboxEvent]: ...
    async def ack_events(self, event_ids: Sequence[int]) -> int: ...
    async def set_aside(self, reasons: Sequence[tuple[int, str]]) -> int: ...
    async def dead_events(self, limit: int) -> list[DeadEvent]: ...
    def dead_events_count(self) -> int: ...

    # start-up and housekeeping
    async def recover(
        self, resend_on_timeout: Callable[[str], bool], make_events: EventMaker
    ) -> RecoveryReport: ...
    async def purge(self, older_than: float) -> int: ...
    async def purge_dead_events(self, older_than: float) -> int: ...
    async def queue_depths(self) -> dict[tuple[str, int], int]: ...
    async def outbox_size(self) -> int: ...
    async def job(self, job_id: str) -> JobView | None: ...

    # operator actions
    async def cancel_queued(
        self, job_id: str, make_events: EventMaker
    ) -> tuple[JobView | None, bool]: ...
    async def requeue_unknown(self, job_id: str) -> tuple[JobView | None, bool]: ...
    async def list_jobs(
        self,
        *,
        carrier: str | None = None,
        state: JobState | None = None,
        lane: int | None = None,
        limit: int = 50,
    ) -> list[JobView]: ...

    # held jobs, replies, consent (issue 14)
    def held_counts(self) -> dict[str, int]: ...
    async def next_held(self) -> float | None: ...
    async def due_held(self, now: float, limit: int) -> list[StoredJob]: ...
    async def hold(
        self,
        job_id: str,
        until: float,
        reason: str,
        events: Sequence[OutboxEvent] = (),
        *,
        send_at: float | None = None,
    ) -> bool: ...
    async def release_held(self, job_ids: Sequence[str]) -> list[tuple[str, int]]: ...
    async def add_mo(
        self, number: str, now: float, make_events: MoEventMaker
    ) -> ReplyWindow | None: ...
    async def purge_replies(self, before: float) -> int: ...
    async def add_admitted(
        self,
        jobs: Sequence[StoredJob],
        usage: Sequence[Usage | None],
        gate: MarketingGate | None,
        hold: HoldMaker | None = None,
    ) -> list[Admission]: ...
    async def marketing_release(
        self, job_id: str, gate: MarketingGate, now: float
    ) -> Go | Hold | Reject | None: ...
    async def record_mo(
        self,
        number: str,
        now: float,
        make_events: MoEventMaker,
        change: ConsentChange | None,
        replies: Sequence[StoredJob] = (),
        reply_on_change: Sequence[StoredJob] = (),
    ) -> tuple[ReplyWindow | None, bool]: ...
    async def consent_records(
        self, *, opted_out_only: bool = True, limit: int | None = None
    ) -> list[ConsentRecord]: ...
    async def consent_counts(self) -> dict[tuple[str, str], int]: ...
    async def purge_marketing_sends(self, older_than: float) -> int: ...

    # metrics
    def size_bytes(self) -> int: ...
    def stats(self) -> StoreStats: ...
