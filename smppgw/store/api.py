"""``Store``: the gateway's durable state behind an asyncio API.

Every method queues one small operation (``smppgw.store.ops``) to the writer and returns
only after the transaction that carried it COMMITTED; reads go through the same writer, so
what they see is consistent with every write acknowledged before them. The writer is a
process of its own (``store.writer: process``, ``smppgw.store.process``: the event loop
keeps its GIL) or a thread of this one (``thread``, ``smppgw.store.writer``), or both with
one active at a time, chosen by the load (``auto``, ``smppgw.store.auto``); operations
are therefore module-level functions over plain, picklable data, including the callables
some of them take (``make_events``, ``gate``, ``hold``, ``pick``), and what they are given
is a copy in the writer process. Hence one rule for every writer and both backends: the
store never changes an ``OutboxEvent`` it is given (its ``event_id`` stays as it was);
``add_events`` returns the ids, and events read back (``pending_events``) carry theirs.

A cancelled caller does not cancel its operation: it may still commit. That is safe by
design (adding a job twice is deduplicated; state changes are idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Literal, TypeVar

from smppgw.pipeline.marketing import Go, Hold, MarketingGate, Reject
from smppgw.store import ops, routes
from smppgw.store.auto import AutoWriter
from smppgw.store.batch import BatchStats
from smppgw.store.calls import Call
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
from smppgw.store.process import ProcessWriter
from smppgw.store.schema import connect
from smppgw.store.writer import Tx, Writer

T = TypeVar("T")
#: Either writer (``make`` in ``Store.__init__`` builds both the same way).
_W = TypeVar("_W", Writer, ProcessWriter)
EventMaker = Callable[[JobView, str], list[OutboxEvent]]

#: Jobs deleted per transaction by ``purge``: long enough to be efficient, short enough not
#: to hold up the jobs and receipts queued behind it.
PURGE_CHUNK = 2000

WriterMode = Literal["process", "thread", "auto"]
#: What the writer reads at open and the main side keeps in step from then on:
#: queue depths, held jobs by reason, outbox rows, dead events.
Counts = tuple[dict[tuple[str, int], int], dict[str, int], int, int]


def open_counted(
    path: str, busy_timeout: float, synchronous: str, keep_text: bool
) -> tuple[sqlite3.Connection, Counts]:
    """Open (create, upgrade) the database and read the counters: in the writer thread, or
    in the writer process (hence module-level: it is pickled there)."""
    conn = connect(path, busy_timeout=busy_timeout, synchronous=synchronous, keep_text=keep_text)
    tx = Tx(conn, 0.0)
    counts = (
        dict(ops.count_queued(tx)),
        dict(ops.count_held(tx)),
        ops.count_outbox(tx),
        ops.count_dead_events(tx),
    )
    return conn, counts


def open_plain(
    path: str, busy_timeout: float, synchronous: str, keep_text: bool
) -> tuple[sqlite3.Connection, None]:
    """Open the database for the second writer of ``store.writer: auto`` (the child): the
    first one already created or upgraded it and read the counters."""
    conn = connect(path, busy_timeout=busy_timeout, synchronous=synchronous, keep_text=keep_text)
    return conn, None


def _ignore(initial: None) -> None:
    """The child of ``store.writer: auto`` reads no counters (the thread did)."""


def _raw(tx: Tx, fn: Callable[[sqlite3.Connection], T]) -> T:
    tx.flush()  # raw SQL sees what the batch's earlier operations wrote
    return fn(tx.conn)


def _ported(tx: Tx, number: str) -> str | None:
    return routes.ported_carrier(tx.conn, number, tx.now)


def _in_flight_carriers(tx: Tx) -> list[str]:
    rows = tx.conn.execute("SELECT DISTINCT carrier FROM jobs WHERE state = 2").fetchall()
    return [carrier for (carrier,) in rows]


class Store:
    """SQLite (WAL) job queue, dedup keys, message-id map and event outbox."""

    def __init__(
        self,
        path: str,
        *,
        commit_interval: float = 0.0,
        max_batch: int = 5000,
        busy_timeout: float = 5.0,
        synchronous: str = "NORMAL",
        keep_text: bool = False,
        on_batch: Callable[[int, float | None], None] | None = None,
        writer: WriterMode = "thread",
    ) -> None:
        """``commit_interval``: when the previous batch carried several operations, how
        long the writer waits for more before committing. Zero (never wait) is best as
        measured: a WAL commit costs ~0.1 ms, and operations that arrive while one batch
        commits already form the next batch, so waiting only adds latency (see
        tests/perf/bench_store.py).
        ``synchronous``: ``NORMAL`` survives any process death; ``FULL`` also survives
        power loss, at one fsync per batch (see ``smppgw.store.schema``).
        ``on_batch(operations, seconds)``: called from the writer thread after each
        transaction, ``seconds`` None when it failed (for metrics; must be cheap).
        ``keep_text``: keep a job's text after it is submitted or final (``store.keep_text``;
        off by default, see ``smppgw.store.schema``).
        ``writer``: ``process`` (the writer in a child process, ``store.writer``),
        ``thread``, or ``auto`` (both, the active one chosen by the load:
        ``smppgw.store.auto``)."""
        self.path = path
        self._depths: Counter[tuple[str, int]] = Counter()
        self._held: Counter[str] = Counter()
        self._outbox = 0
        self._dead = 0
        self.writer_mode: WriterMode = writer
        self._loop: asyncio.AbstractEventLoop | None = None
        opening = partial(open_counted, path, busy_timeout, synchronous, keep_text)
        self._writer: Writer | ProcessWriter | AutoWriter

        def make(
            kind: type[_W],
            connect: Callable[[], tuple[sqlite3.Connection, Any]],
            on_open: Callable[[Any], None],
            on_commit: Callable[[Tx], None],
            stats: BatchStats | None = None,
        ) -> _W:
            return kind(
                connect,
                commit_interval=commit_interval,
                max_batch=max_batch,
                on_open=on_open,
                on_commit=on_commit,
                on_batch=on_batch,
                stats=stats,
            )

        if writer == "auto":
            stats = BatchStats()
            thread = make(Writer, opening, self._opened, self._committed_soon, stats)
            child = make(
                ProcessWriter,
                partial(open_plain, path, busy_timeout, synchronous, keep_text),
                _ignore,
                self._committed,
                stats,
            )
            self._writer = AutoWriter(thread, child, stats)
        else:
            self._writer = (
                make(ProcessWriter, opening, self._opened, self._committed)
                if writer == "process"
                else make(Writer, opening, self._opened, self._committed)
            )

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        """Create or upgrade the database and start the writer thread."""
        self._loop = asyncio.get_running_loop()
        await self._writer.start()

    async def close(self) -> None:
        """Commit everything queued, checkpoint the WAL, close the connection."""
        await self._writer.stop()

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def writer_pid(self) -> int | None:
        """The writer process's id (``writer="process"``, while it runs), else None."""
        if isinstance(self._writer, AutoWriter):
            return self._writer.process.pid
        return self._writer.pid if isinstance(self._writer, ProcessWriter) else None

    @property
    def writer_lost(self) -> asyncio.Event | None:
        """Set when the writer process died without being stopped (``writer="process"``
        or ``"auto"``, whichever writer was active): every operation fails from then on,
        and the gateway stops."""
        if isinstance(self._writer, AutoWriter):
            return self._writer.process.lost_event
        return self._writer.lost_event if isinstance(self._writer, ProcessWriter) else None

    def _opened(self, counts: Counts) -> None:
        """At open (writer thread, or event loop for a writer process): the counters."""
        depths, held, outbox, dead = counts
        self._depths = Counter(depths)
        self._held = Counter(held)
        self._outbox = outbox
        self._dead = dead

    def _committed_soon(self, tx: Tx) -> None:
        """``auto``'s writer thread after a COMMIT: the changes are applied in the event
        loop (posted before the batch's answers, so still before any caller hears), so the
        counters have one owner whichever writer is active."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._committed, tx)

    def _committed(self, tx: Tx) -> None:
        """After a COMMIT (writer thread, or event loop for a writer process): apply the
        batch's counter changes."""
        if tx.depth:
            depths = self._depths
            for key, change in tx.depth.items():
                value = depths[key] + change
                if value:
                    depths[key] = value
                else:
                    del depths[key]
        # Events another process put in the outbox (``smppgw consent``) are deleted here
        # without having been counted: never below zero.
        self._outbox = max(0, self._outbox + tx.outbox)
        if tx.held:
            held = self._held
            for reason, change in tx.held.items():
                held[reason] += change

    def _run(self, fn: Callable[[Tx], T]) -> asyncio.Future[T]:
        return self._writer.submit(fn)

    # -- jobs in ---------------------------------------------------------------------
    async def add_jobs(self, jobs: Sequence[StoredJob]) -> list[bool]:
        """Queue jobs; per job True if new, False if its id is already known (in any
        state, until purged: nothing is written for it)."""
        return await self._run(Call(ops.add_jobs, list(jobs)))

    async def add_counted(
        self, jobs: Sequence[StoredJob], usage: Sequence[Usage | None]
    ) -> list[bool | None]:
        """``add_jobs`` with each tenant job's parts counted in ``tenant_usage`` in the
        same transaction (``usage[i]`` for ``jobs[i]``, None for an uncounted job). Per
        job True (new), False (known id) or None (over the tenant's daily limit: not added)."""
        return await self._run(Call(ops.add_counted, list(jobs), list(usage)))

    async def add_admitted(
        self,
        jobs: Sequence[StoredJob],
        usage: Sequence[Usage | None],
        gate: MarketingGate | None,
        hold: ops.HoldMaker | None = None,
    ) -> list[ops.Admission]:
        """``add_counted`` that also decides each ``marketing`` job with ``gate`` and counts
        it against the number's rolling 24 h, in the same transaction: per job True, False,
        None (tenant quota), a ``Reject`` (not added) or a ``Hold`` (added, held: as
        ``hold`` makes it, see ``ops.add_admitted``)."""
        return await self._run(Call(ops.add_admitted, list(jobs), list(usage), gate, hold))

    async def marketing_release(
        self, job_id: str, gate: MarketingGate, now: float
    ) -> Go | Hold | Reject | None:
        """The marketing rules asked again for a held job about to be released (the
        held-jobs release check): None for a job that is not marketing; its count in the
        rolling 24 h moves with the decision (``ops.marketing_release``)."""
        return await self._run(partial(ops.marketing_release, job_id=job_id, gate=gate, now=now))

    async def record_mo(
        self,
        number: str,
        now: float,
        make_events: Callable[[ReplyWindow | None], list[OutboxEvent]],
        change: ConsentChange | None,
        replies: Sequence[StoredJob] = (),
        reply_on_change: Sequence[StoredJob] = (),
    ) -> tuple[ReplyWindow | None, bool]:
        """``add_mo`` with the MO's consent change and reply jobs in the same transaction
        (see ``ops.record_mo``): the reply window, and whether the consent changed."""
        return await self._run(
            partial(
                ops.record_mo,
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
            partial(ops.consent_records, opted_out_only=opted_out_only, limit=limit)
        )

    async def consent_counts(self) -> dict[tuple[str, str], int]:
        """(action, source) → consent changes recorded, by this process or ``smppgw consent``."""
        return await self._run(ops.consent_counts)

    async def purge_marketing_sends(self, older_than: float) -> int:
        return await self._run(partial(ops.purge_marketing_sends, older_than=older_than))

    async def tenant_usage(self, tenant: str, day: str) -> int:
        """Parts counted for ``tenant`` on ``day`` (``YYYY-MM-DD``)."""
        return await self._run(partial(ops.tenant_usage, tenant=tenant, day=day))

    async def count_waiting(self, prefix: str | None) -> int:
        """Jobs with an id starting with ``prefix`` (``"shop/"``; ``None``: ids without a
        tenant) not yet submitted or final."""
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
        """Record an invalid job as final ``rejected`` (its id is a dedup key like any
        other) together with its events. False, and nothing written, for a known id."""
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

    # -- the send path ---------------------------------------------------------------
    async def claim(self, carrier: str, limit: int, now: float) -> list[StoredJob]:
        """Up to ``limit`` queued jobs of ``carrier`` due at ``now``, lane by lane in
        arrival order, now marked ``sending``."""
        return await self._run(Call(ops.claim, carrier, limit, now))

    async def release(self, job_ids: Sequence[str]) -> int:
        """Put claimed (``sending`` or ``in_flight``) jobs back in their lanes at their
        original place in arrival order; returns how many moved. Releasing an in-flight
        job means the caller knows its submit_sm was refused or never written."""
        return await self._run(partial(ops.release, job_ids=list(job_ids)))

    async def release_unsent(self, carrier: str | None = None) -> int:
        """After ``carrier`` (every carrier when ``None``) has stopped, put back every job
        it claimed and left without an outcome: never written to the SMSC, or refused with
        a transient error and waiting for its retry (what ``Carrier.stop`` leaves). Those
        are safe to send again; returns how many moved."""
        return await self._run(partial(ops.release_unsent, carrier=carrier))

    async def mark_in_flight(self, job_ids: Sequence[str]) -> None:
        """Record that a submit_sm for these claimed jobs is about to be written: from
        here on a crash leaves their outcome unknown (see ``recover``)."""
        await self._run(Call(ops.mark_in_flight, list(job_ids)))

    async def retry_later(self, job_id: str, attempt: int, next_attempt: float) -> bool:
        """Back to its lane, not claimable before ``next_attempt`` (wall clock). False if
        the job is unknown, submitted or final."""
        return await self._run(
            partial(ops.retry_later, job_id=job_id, attempt=attempt, next_attempt=next_attempt)
        )

    async def next_due(self, carrier: str) -> float | None:
        """Earliest ``next_attempt`` among ``carrier``'s jobs waiting for a retry."""
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
        """Every part accepted: state ``submitted`` (``final`` when no receipt is
        wanted), map each part's normalised id to (job, part, parts), and queue
        ``events``, all in one transaction. Raises KeyError for an unknown job and
        ValueError for a final one or mismatched id lists (nothing written)."""
        await self._run(
            Call(
                ops.mark_submitted,
                job_id,
                carrier,
                list(normalized_ids),
                list(raw_ids),
                final,
                list(events),
            )
        )

    async def finish(
        self,
        job_id: str,
        status: str,
        events: Sequence[OutboxEvent],
        *,
        code: str | None = None,
    ) -> bool:
        """Record a final status and its events atomically. False (nothing written) if
        the job is unknown or already final, so a job gets exactly one final status."""
        return await self._run(
            partial(ops.finish, job_id=job_id, status=status, events=list(events), code=code)
        )

    # -- receipts --------------------------------------------------------------------
    async def lookup(self, carrier: str, normalized_id: str) -> tuple[str, int, int] | None:
        """(job_id, part, parts) for a carrier's normalised message id."""
        return await self._run(Call(ops.lookup, carrier, normalized_id))

    async def apply_receipt(
        self, job_id: str, part: int, state: str, make_events: EventMaker
    ) -> str | None:
        """Record part ``part``'s (0-based) receipt ``state``; when that makes the job
        final (``delivered`` once every part is DELIVRD/ACCEPTD; ``undelivered`` or
        ``expired`` as soon as one part failed) set the final status and store
        ``make_events(view, status)`` in the same transaction, and return the status.
        ``make_events`` runs in the writer thread: keep it pure and quick."""
        return await self._run(Call(ops.apply_receipt, job_id, part, state, make_events))

    # -- outbox ----------------------------------------------------------------------
    async def add_events(self, events: Sequence[OutboxEvent]) -> list[int]:
        """Queue events (MO, unmatched receipts); their event ids, in order (``events``
        themselves are not changed: see the module's docstring)."""
        return await self._run(partial(ops.add_events, events=list(events)))

    async def pending_events(self, limit: int, after_id: int = 0) -> list[OutboxEvent]:
        """Oldest first, ids greater than ``after_id``."""
        return await self._run(Call(ops.pending_events, limit, after_id))

    async def ack_events(self, event_ids: Sequence[int]) -> int:
        """Delete published (PUBACKed) events; returns how many existed."""
        return await self._run(Call(ops.ack_events, list(event_ids)))

    async def set_aside(self, reasons: Sequence[tuple[int, str]]) -> int:
        """Move events the broker will not take from the outbox to ``dead_events``, each
        with its reason, in one transaction (never published again; kept for inspection).
        Returns how many moved (an id already gone is skipped)."""
        moved = await self._run(partial(ops.set_aside, reasons=list(reasons)))
        self._dead += moved
        return moved

    async def dead_events(self, limit: int) -> list[DeadEvent]:
        """The ``limit`` events set aside most recently, newest first."""
        return await self._run(partial(ops.dead_events, limit=limit))

    def dead_events_count(self) -> int:
        """Events in ``dead_events`` (counted at open, kept in step by this process)."""
        return self._dead

    # -- start-up and housekeeping ---------------------------------------------------
    async def recover(
        self, resend_on_timeout: Callable[[str], bool], make_events: EventMaker
    ) -> RecoveryReport:
        """Run once at start, before any carrier claims. ``sending`` jobs go back to
        their lanes; ``in_flight`` ones too when ``resend_on_timeout(carrier)``, else
        they become final ``failed`` with code ``unknown_outcome`` and
        ``make_events(view, "failed")`` is stored. One transaction."""
        # ``resend_on_timeout`` is the gateway's (its carriers' config): asked here, for the
        # carriers that have jobs in flight, so what goes to the writer is plain data.
        carriers = await self._run(_in_flight_carriers)
        resend = frozenset(c for c in carriers if resend_on_timeout(c))
        return await self._run(
            partial(ops.recover, resend_on_timeout=resend.__contains__, make_events=make_events)
        )

    async def purge(self, older_than: float) -> int:
        """Delete jobs submitted or finished before ``older_than`` (wall clock), with
        their message-id rows, in chunks; returns how many. A job still waiting for a
        receipt after the whole retention period is purged too: none will come."""
        total = 0
        while True:
            removed = await self._run(
                partial(ops.purge_some, older_than=older_than, limit=PURGE_CHUNK)
            )
            total += removed
            if removed < PURGE_CHUNK:
                return total

    async def purge_dead_events(self, older_than: float) -> int:
        """Delete events set aside before ``older_than`` (wall clock); returns how many."""
        removed = await self._run(partial(ops.purge_dead_events, older_than=older_than))
        self._dead -= removed
        return removed

    async def queue_depths(self) -> dict[tuple[str, int], int]:
        """(carrier, lane) → queued jobs, from counters kept in step with each commit."""
        if self.writer_mode != "thread":  # kept by this thread: as of the last commit
            return dict(self._depths)
        # Kept by the writer thread: read there, between two batches.
        return await self._run(lambda tx: dict(self._depths))

    async def outbox_size(self) -> int:
        """Events waiting for the broker."""
        if self.writer_mode != "thread":
            return self._outbox
        return await self._run(lambda tx: self._outbox)

    async def job(self, job_id: str) -> JobView | None:
        return await self._run(partial(ops.job, job_id=job_id))

    # -- held jobs (smppgw.pipeline.holds) -------------------------------------------
    def held_counts(self) -> dict[str, int]:
        """Held jobs by reason, from counters kept in step with each commit (never a scan)."""
        return {reason: n for reason, n in self._held.items() if n}

    async def next_held(self) -> float | None:
        """When the earliest held job is due (its release time, or its ttl if sooner)."""
        return await self._run(ops.next_held)

    async def due_held(self, now: float, limit: int) -> list[StoredJob]:
        """Up to ``limit`` held jobs due at ``now``, by lane then arrival; still held."""
        return await self._run(partial(ops.due_held, now=now, limit=limit))

    async def hold(
        self,
        job_id: str,
        until: float,
        reason: str,
        events: Sequence[OutboxEvent] = (),
        *,
        send_at: float | None = None,
    ) -> bool:
        """Hold a queued or held job until ``until`` for ``reason``, with ``events``
        (its ``scheduled`` event), in one transaction. False for a job in another state."""
        return await self._run(
            partial(
                ops.hold,
                job_id=job_id,
                until=until,
                reason=reason,
                events=list(events),
                send_at=send_at,
            )
        )

    async def release_held(self, job_ids: Sequence[str]) -> list[tuple[str, int]]:
        """Held jobs into their lanes; the (carrier, lane) of each one moved."""
        return await self._run(partial(ops.release_held, job_ids=list(job_ids)))

    # -- replies ---------------------------------------------------------------------
    async def add_mo(
        self,
        number: str,
        now: float,
        make_events: Callable[[ReplyWindow | None], list[OutboxEvent]],
    ) -> ReplyWindow | None:
        """Store an MO's events, built by ``make_events(window)`` from the newest reply
        window open for ``number`` at ``now``, in one transaction; returns that window.
        ``make_events`` runs in the writer thread: keep it pure and quick."""
        return await self._run(partial(ops.add_mo, number=number, now=now, make_events=make_events))

    async def purge_replies(self, before: float) -> int:
        """Delete reply windows closed before ``before``; returns how many."""
        return await self._run(partial(ops.purge_replies, before=before))

    # -- operator actions (smppgw ctl) -----------------------------------------------
    async def cancel_queued(
        self, job_id: str, make_events: EventMaker
    ) -> tuple[JobView | None, bool]:
        """End a job still waiting in its lane (or held) ``cancelled``, with ``make_events(view,
        "cancelled")``, in one transaction. The job's view (None for an unknown id) and
        whether it was cancelled now."""
        return await self._run(partial(ops.cancel_queued, job_id=job_id, make_events=make_events))

    async def requeue_unknown(self, job_id: str) -> tuple[JobView | None, bool]:
        """Put a ``failed`` / ``unknown_outcome`` job whose text was kept (``keep_text``)
        back in its lane; the view, and whether it moved."""
        return await self._run(partial(ops.requeue_unknown, job_id=job_id))

    async def list_jobs(
        self,
        *,
        carrier: str | None = None,
        state: JobState | None = None,
        lane: int | None = None,
        limit: int = 50,
    ) -> list[JobView]:
        """The newest ``limit`` jobs with that carrier, state and lane (each optional)."""
        return await self._run(
            partial(
                ops.list_jobs,
                carrier=carrier,
                state=None if state is None else int(state),
                lane=lane,
                limit=limit,
            )
        )

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in the writer inside a batch's transaction: for
        maintenance (pragmas, ``EXPLAIN QUERY PLAN``) and tests, not for the gateway. With a
        writer process ``fn`` must pickle (a module-level function or a partial of one)."""
        return await self._run(partial(_raw, fn=fn))

    # -- failover and ported numbers (smppgw.store.routes) ---------------------------
    def queued(self, carrier: str, lane: int) -> int:
        """Queued jobs of ``carrier`` in ``lane`` as of the last commit (no round trip:
        the failover monitor asks this often)."""
        return self._depths.get((carrier, lane), 0)

    async def move_job(self, job_id: str, carrier: str, to: str, error: str) -> bool:
        """A job claimed by ``carrier`` with a known outcome there goes to ``to``'s queue,
        in its lane and arrival order, ``(carrier, error)`` added to its attempts."""
        return await self._run(
            partial(routes.move_job, job_id=job_id, carrier=carrier, to=to, error=error)
        )

    async def move_queued(
        self, carrier: str, max_lane: int, pick: routes.Picker, error: str, limit: int = 1000
    ) -> list[routes.Move]:
        """Queued jobs of ``carrier`` (lanes up to ``max_lane``) go where ``pick`` says."""
        return await self._run(
            partial(
                routes.move_queued,
                carrier=carrier,
                max_lane=max_lane,
                pick=pick,
                error=error,
                limit=limit,
            )
        )

    async def set_carrier_up(self, carrier: str, up: bool) -> None:
        """Nothing: one gateway owns this store (a cluster's shares it: PostgreSQL)."""

    async def carrier_up_elsewhere(self, carrier: str) -> bool:
        """False: no other gateway sends this store's jobs."""
        return False

    async def ported_carrier(self, number: str) -> str | None:
        """The carrier ``number`` was ported to (None: unknown or expired), through the
        writer. Intake does not use this on SQLite: ``PortedLookup`` reads the file on a
        connection of its own, without the trip."""
        return await self._run(partial(_ported, number=number))

    async def learn_port(self, number: str, carrier: str, ttl: float) -> None:
        await self._run(partial(routes.learn, number=number, carrier=carrier, ttl=ttl))

    async def forget_port(self, number: str) -> routes.Ported | None:
        return await self._run(partial(routes.forget, number=number))

    async def import_ported(
        self, entries: Sequence[tuple[str, str]], source: str, *, replace_source: bool
    ) -> routes.ImportReport:
        return await self._run(
            partial(
                routes.import_ported,
                entries=list(entries),
                source=source,
                replace_source=replace_source,
            )
        )

    async def count_ported(self) -> int:
        return await self._run(routes.count_ported)

    async def purge_ported(self) -> int:
        return await self._run(routes.purge_ported)

    # -- metrics ---------------------------------------------------------------------
    def size_bytes(self) -> int:
        """Database plus WAL file size on disk."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(self.path + suffix)
        return total

    def stats(self) -> StoreStats:
        return self._writer.stats()
