"""``PostgresStore``: the store contract (``smppgw.store.contract.StoreAPI``) on PostgreSQL,
shared by every gateway of a cluster.

The method docstrings of ``smppgw.store.api.Store`` are the contract; this class keeps
their signatures and results exactly (the same test suite runs against both). What is
new is for the cluster: a ``node`` id (``cluster.node_id``) that owns what this gateway
claims and writes, its lease (``renew_lease``, ``store.lease``), ``take_over`` of dead
nodes' work, ``live_nodes`` (for the rate limit's fallback share).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import asyncpg

from smppgw.pipeline.marketing import Go, Hold, MarketingGate, Reject
from smppgw.store import routes
from smppgw.store.contract import Admission, HoldMaker
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
    StoreError,
    StoreStats,
    Usage,
)
from smppgw.store.pg import consent, holds, ops
from smppgw.store.pg import routes as pg_routes
from smppgw.store.pg.schema import migrate
from smppgw.store.pg.writer import Connection, PgTx, PgWriter

T = TypeVar("T")
EventMaker = Callable[[JobView, str], list[OutboxEvent]]

PURGE_CHUNK = 2000
#: Longest one statement may run before the batch fails (and is retried by its callers).
COMMAND_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0


class PostgresStore:
    """PostgreSQL job queue, dedup keys, message-id map and event outbox for a cluster."""

    def __init__(
        self,
        dsn: str,
        *,
        node: str,
        lease: float = 15.0,
        keep_text: bool = False,
        max_batch: int = 5000,
        on_batch: Callable[[int, float | None], None] | None = None,
    ) -> None:
        self._dsn = dsn
        self.node = node
        self.lease = lease
        self._keep_text = keep_text
        self._dead = 0
        self._size = 0
        self._held: dict[str, int] = {}
        self._writer = PgWriter(
            self._connect,
            node=node,
            max_batch=max_batch,
            on_batch=on_batch,
            merged={
                "mark_in_flight": ops.mark_in_flight_many,
                "mark_submitted": ops.mark_submitted_many,
                "lookup": ops.lookup_many,
                "apply_receipt": ops.apply_receipt_many,
                "ported_carrier": pg_routes.ported_carriers,
            },
        )

    async def _connect(self) -> Connection:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT,
            server_settings={
                "application_name": f"smppgw {self.node}"[:63],
                "smppgw.keep_text": "on" if self._keep_text else "off",
            },
        )
        return conn

    # -- lifecycle ---------------------------------------------------------------------
    async def open(self) -> None:
        """Apply pending migrations (on a connection of their own, under the advisory
        lock), start the writer, take the lease."""
        await self.migrate()
        await self._writer.start()
        await self.renew_lease()
        self._dead = await self._run(ops.count_dead_events)
        await self.refresh_held()

    async def migrate(self) -> list[int]:
        """Bring the schema up to date (``smppgw migrate`` runs only this); the versions
        applied."""
        try:
            conn = await self._connect()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from exc
        try:
            return await migrate(conn)
        except asyncpg.PostgresError as exc:
            raise StoreError(f"migration failed: {type(exc).__name__}: {exc}") from exc
        finally:
            await conn.close()

    async def close(self) -> None:
        await self._writer.stop()

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _run(self, fn: Callable[[PgTx], Awaitable[T]]) -> asyncio.Future[T]:
        return self._writer.submit(fn)

    # -- jobs in -----------------------------------------------------------------------
    async def add_jobs(self, jobs: Sequence[StoredJob]) -> list[bool]:
        return await self._run(partial(ops.add_jobs, jobs=list(jobs)))

    async def add_counted(
        self, jobs: Sequence[StoredJob], usage: Sequence[Usage | None]
    ) -> list[bool | None]:
        return await self._run(partial(ops.add_counted, jobs=list(jobs), usage=list(usage)))

    async def tenant_usage(self, tenant: str, day: str) -> int:
        return await self._run(partial(ops.tenant_usage, tenant=tenant, day=day))

    async def count_waiting(self, prefix: str | None) -> int:
        return await self._run(partial(ops.count_waiting, prefix=prefix))

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
    ) -> bool:
        return await self._run(
            partial(
                ops.add_rejected,
                job_id=job_id,
                events=list(events),
                carrier=carrier,
                code=code,
                response_topic=response_topic,
                correlation_data=correlation_data,
                received_at=received_at,
            )
        )

    # -- the send path -----------------------------------------------------------------
    async def claim(self, carrier: str, limit: int, now: float) -> list[StoredJob]:
        return await self._run(partial(ops.claim, carrier=carrier, limit=limit, now=now))

    async def release(self, job_ids: Sequence[str]) -> int:
        return await self._run(partial(ops.release, job_ids=list(job_ids)))

    async def release_unsent(self, carrier: str | None = None) -> int:
        return await self._run(partial(ops.release_unsent, carrier=carrier))

    async def mark_in_flight(self, job_ids: Sequence[str]) -> None:
        ids = list(job_ids)
        await self._writer.submit(
            partial(ops.mark_in_flight, job_ids=ids), kind="mark_in_flight", args=ids
        )

    async def retry_later(self, job_id: str, attempt: int, next_attempt: float) -> bool:
        return await self._run(
            partial(ops.retry_later, job_id=job_id, attempt=attempt, next_attempt=next_attempt)
        )

    async def next_due(self, carrier: str) -> float | None:
        return await self._run(partial(ops.next_due, carrier=carrier))

    async def mark_submitted(
        self,
        job_id: str,
        carrier: str,
        normalized_ids: Sequence[str],
        raw_ids: Sequence[str],
        final: bool,
        events: Sequence[OutboxEvent],
    ) -> None:
        normalized, raw, evs = list(normalized_ids), list(raw_ids), list(events)
        await self._writer.submit(
            partial(
                ops.mark_submitted,
                job_id=job_id,
                carrier=carrier,
                normalized_ids=normalized,
                raw_ids=raw,
                final=final,
                events=evs,
            ),
            kind="mark_submitted",
            args=(job_id, carrier, normalized, raw, final, evs),
        )

    async def finish(
        self,
        job_id: str,
        status: str,
        events: Sequence[OutboxEvent],
        *,
        code: str | None = None,
    ) -> bool:
        return await self._run(
            partial(ops.finish, job_id=job_id, status=status, events=list(events), code=code)
        )

    # -- receipts ----------------------------------------------------------------------
    async def lookup(self, carrier: str, normalized_id: str) -> tuple[str, int, int] | None:
        return await self._writer.submit(
            partial(ops.lookup, carrier=carrier, normalized_id=normalized_id),
            kind="lookup",
            args=(carrier, normalized_id),
        )

    async def apply_receipt(
        self, job_id: str, part: int, state: str, make_events: EventMaker
    ) -> str | None:
        return await self._writer.submit(
            partial(
                ops.apply_receipt, job_id=job_id, part=part, state=state, make_events=make_events
            ),
            kind="apply_receipt",
            args=(job_id, part, state, make_events),
        )

    # -- outbox ------------------------------------------------------------------------
    async def add_events(self, events: Sequence[OutboxEvent]) -> list[int]:
        return await self._run(partial(ops.add_events, events=list(events)))

    async def pending_events(self, limit: int, after_id: int = 0) -> list[OutboxEvent]:
        return await self._run(partial(ops.pending_events, limit=limit, after_id=after_id))

    async def ack_events(self, event_ids: Sequence[int]) -> int:
        return await self._run(partial(ops.ack_events, event_ids=list(event_ids)))

    async def set_aside(self, reasons: Sequence[tuple[int, str]]) -> int:
        moved = await self._run(partial(ops.set_aside, reasons=list(reasons)))
        self._dead += moved
        return moved

    async def dead_events(self, limit: int) -> list[DeadEvent]:
        return await self._run(partial(ops.dead_events, limit=limit))

    def dead_events_count(self) -> int:
        return self._dead

    # -- start-up, leases and housekeeping ---------------------------------------------
    async def recover(
        self, resend_on_timeout: Callable[[str], bool], make_events: EventMaker
    ) -> RecoveryReport:
        """At start: this node's previous run's jobs and every expired node's (see
        ``ops.recover``)."""
        return await self._run(
            partial(ops.recover, resend_on_timeout=resend_on_timeout, make_events=make_events)
        )

    async def take_over(
        self, resend_on_timeout: Callable[[str], bool], make_events: EventMaker
    ) -> RecoveryReport:
        """While running: only nodes whose lease ran out (never this node's own claims)."""
        return await self._run(
            partial(
                ops.recover,
                resend_on_timeout=resend_on_timeout,
                make_events=make_events,
                own=False,
            )
        )

    async def renew_lease(self) -> None:
        await self._run(partial(ops.renew_lease, lease=self.lease))

    async def acquire_bind(self, carrier: str, max_binds: int) -> int | None:
        """A free bind slot of ``carrier`` (``max_binds`` across the cluster), or None."""
        return await self._run(partial(ops.acquire_bind, carrier=carrier, max_binds=max_binds))

    async def release_bind(self, carrier: str, slot: int) -> None:
        await self._run(partial(ops.release_bind, carrier=carrier, slot=slot))

    async def live_nodes(self) -> int:
        """Gateways whose lease is fresh (this one included once it renewed)."""
        return await self._run(ops.live_nodes)

    async def purge(self, older_than: float) -> int:
        total = 0
        while True:
            removed = await self._run(
                partial(ops.purge_some, older_than=older_than, limit=PURGE_CHUNK)
            )
            total += removed
            if removed < PURGE_CHUNK:
                return total

    async def purge_dead_events(self, older_than: float) -> int:
        removed = await self._run(partial(ops.purge_dead_events, older_than=older_than))
        self._dead -= removed
        return removed

    async def queue_depths(self) -> dict[tuple[str, int], int]:
        """Cluster-wide (carrier, lane) → queued jobs, counted now."""
        return await self._run(ops.count_queued)

    async def outbox_size(self) -> int:
        """This node's events waiting for the broker."""
        return await self._run(ops.count_outbox)

    async def job(self, job_id: str) -> JobView | None:
        return await self._run(partial(ops.job, job_id=job_id))

    # -- operator actions --------------------------------------------------------------
    async def cancel_queued(
        self, job_id: str, make_events: EventMaker
    ) -> tuple[JobView | None, bool]:
        return await self._run(partial(ops.cancel_queued, job_id=job_id, make_events=make_events))

    async def requeue_unknown(self, job_id: str) -> tuple[JobView | None, bool]:
        return await self._run(partial(ops.requeue_unknown, job_id=job_id))

    async def list_jobs(
        self,
        *,
        carrier: str | None = None,
        state: JobState | None = None,
        lane: int | None = None,
        limit: int = 50,
    ) -> list[JobView]:
        return await self._run(
            partial(
                ops.list_jobs,
                carrier=carrier,
                state=None if state is None else int(state),
                lane=lane,
                limit=limit,
            )
        )

    async def run(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """``await fn(connection)`` inside a batch's transaction: maintenance and tests."""
        return await self._run(lambda tx: fn(tx.conn))

    # -- failover and ported numbers (smppgw.store.pg.routes) --------------------------
    def queued(self, carrier: str, lane: int) -> int:
        """1: "maybe". The queue is shared, so no count held here is current (another
        gateway adds and claims); the failover monitor then scans the store, and an idle
        scan is not repeated for ``failover.RESCAN`` (at most two a second per carrier
        that is down, an index range scan each)."""
        return 1

    async def move_job(self, job_id: str, carrier: str, to: str, error: str) -> bool:
        return await self._run(
            partial(pg_routes.move_job, job_id=job_id, carrier=carrier, to=to, error=error)
        )

    async def move_queued(
        self, carrier: str, max_lane: int, pick: routes.Picker, error: str, limit: int = 1000
    ) -> list[routes.Move]:
        return await self._run(
            partial(
                pg_routes.move_queued,
                carrier=carrier,
                max_lane=max_lane,
                pick=pick,
                error=error,
                limit=limit,
            )
        )

    async def set_carrier_up(self, carrier: str, up: bool) -> None:
        """What the other gateways' failover monitors see of this one's binds."""
        await self._run(partial(pg_routes.set_carrier_up, carrier=carrier, up=up))

    async def carrier_up_elsewhere(self, carrier: str) -> bool:
        """Another live gateway can send to ``carrier``: its queued jobs stay for it."""
        return await self._run(partial(pg_routes.carrier_up_elsewhere, carrier=carrier))

    async def ported_carrier(self, number: str) -> str | None:
        """The carrier ``number`` was ported to, as committed now by any gateway or
        ``smppgw routes``: the lookups queued together (one intake turn's) are one
        statement."""
        return await self._writer.submit(
            partial(pg_routes.ported_carrier, number=number), kind="ported_carrier", args=number
        )

    async def learn_port(self, number: str, carrier: str, ttl: float) -> None:
        await self._run(partial(pg_routes.learn, number=number, carrier=carrier, ttl=ttl))

    async def forget_port(self, number: str) -> routes.Ported | None:
        return await self._run(partial(pg_routes.forget, number=number))

    async def import_ported(
        self, entries: Sequence[tuple[str, str]], source: str, *, replace_source: bool
    ) -> routes.ImportReport:
        return await self._run(
            partial(
                pg_routes.import_ported,
                entries=list(entries),
                source=source,
                replace_source=replace_source,
            )
        )

    async def count_ported(self) -> int:
        return await self._run(pg_routes.count_ported)

    async def purge_ported(self) -> int:
        return await self._run(pg_routes.purge_ported)

    # -- held jobs (issue 14; smppgw.store.pg.holds) -----------------------------------
    def held_counts(self) -> dict[str, int]:
        """Cluster-wide held jobs by reason as of the last ``refresh_held`` (at open and
        every lease round: a sync call cannot ask)."""
        return {reason: n for reason, n in self._held.items() if n}

    async def refresh_held(self) -> dict[str, int]:
        self._held = await self._run(holds.held_counts)
        return self.held_counts()

    async def next_held(self) -> float | None:
        return await self._run(holds.next_held)

    async def due_held(self, now: float, limit: int) -> list[StoredJob]:
        """Due held jobs, taken from the other gateways' timers for ``holds.HOLD_CLAIM``."""
        return await self._run(partial(holds.due_held, now=now, limit=limit))

    async def hold(
        self,
        job_id: str,
        until: float,
        reason: str,
        events: Sequence[OutboxEvent] = (),
        *,
        send_at: float | None = None,
    ) -> bool:
        return await self._run(
            partial(
                holds.hold,
                job_id=job_id,
                until=until,
                reason=reason,
                events=list(events),
                send_at=send_at,
            )
        )

    async def release_held(self, job_ids: Sequence[str]) -> list[tuple[str, int]]:
        return await self._run(partial(holds.release_held, job_ids=list(job_ids)))

    # -- replies (issue 14) ------------------------------------------------------------
    async def add_mo(
        self,
        number: str,
        now: float,
        make_events: Callable[[ReplyWindow | None], list[OutboxEvent]],
    ) -> ReplyWindow | None:
        return await self._run(
            partial(holds.add_mo, number=number, now=now, make_events=make_events)
        )

    async def purge_replies(self, before: float) -> int:
        return await self._run(partial(holds.purge_replies, before=before))

    # -- consent and the marketing gate (issue 14; smppgw.store.pg.consent) ------------
    async def add_admitted(
        self,
        jobs: Sequence[StoredJob],
        usage: Sequence[Usage | None],
        gate: MarketingGate | None,
        hold: HoldMaker | None = None,
    ) -> list[Admission]:
        """Marketing jobs decided under their numbers' advisory locks: the cap holds
        across the cluster."""
        return await self._run(
            partial(consent.add_admitted, jobs=list(jobs), usage=list(usage), gate=gate, hold=hold)
        )

    async def marketing_release(
        self, job_id: str, gate: MarketingGate, now: float
    ) -> Go | Hold | Reject | None:
        return await self._run(
            partial(consent.marketing_release, job_id=job_id, gate=gate, now=now)
        )

    async def record_mo(
        self,
        number: str,
        now: float,
        make_events: Callable[[ReplyWindow | None], list[OutboxEvent]],
        change: ConsentChange | None,
        replies: Sequence[StoredJob] = (),
        reply_on_change: Sequence[StoredJob] = (),
    ) -> tuple[ReplyWindow | None, bool]:
        return await self._run(
            partial(
                consent.record_mo,
                number=number,
                now=now,
                make_events=make_events,
                change=change,
                replies=list(replies),
                reply_on_change=list(reply_on_change),
            )
        )

    async def consent_records(
        self, *, opted_out_only: bool = True, limit: int | None = None
    ) -> list[ConsentRecord]:
        return await self._run(
            partial(consent.consent_records, opted_out_only=opted_out_only, limit=limit)
        )

    async def consent_counts(self) -> dict[tuple[str, str], int]:
        return await self._run(consent.consent_counts)

    async def purge_marketing_sends(self, older_than: float) -> int:
        return await self._run(partial(consent.purge_marketing_sends, older_than=older_than))

    # -- metrics -----------------------------------------------------------------------
    def size_bytes(self) -> int:
        """The database's size as of the last ``refresh_size`` (a sync call cannot ask)."""
        return self._size

    async def refresh_size(self) -> int:
        size: Any = await self._run(
            lambda tx: tx.conn.fetchval("SELECT pg_database_size(current_database())")
        )
        self._size = int(size)
        return self._size

    def stats(self) -> StoreStats:
        return self._writer.stats()
