"""The one thread that owns the SQLite connection, with group commit.

Why a thread and one connection: SQLite allows one writer at a time, and a COMMIT is the
expensive part (a WAL append, and with ``synchronous=FULL`` an fsync). The event loop must
never block on it. So every operation is a small function queued to this thread; the
thread takes *everything* pending, runs it in one transaction and commits once ("group
commit"), then resolves all the callers' futures with one ``call_soon_threadsafe`` per
batch. Under load a batch carries hundreds of operations for the price of one commit;
when idle an operation commits alone, at once.

A batch runs as ``smppgw.store.batch.run_batch`` says (SAVEPOINT replay when an operation
fails on its own; an environmental error fails the whole batch, and the thread keeps
running: the next batch tries again). The same batches can run in a process of their own
instead (``smppgw.store.process``, ``store.writer: process``), so that the event loop and
the writer do not share one GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from smppgw.ops.logs import get_logger
from smppgw.store.batch import BatchStats, Outcome, Tx, as_store_error, run_batch
from smppgw.store.model import StoreError, StoreStats

__all__ = ["Tx", "Writer", "commit_or_fail"]

T = TypeVar("T")
log = get_logger("smppgw.store")


class Op(Generic[T]):
    """One queued operation and the future of the coroutine waiting for it."""

    __slots__ = ("fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[Tx], T],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[T],
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future = future


_STOP = object()

Result = tuple["asyncio.Future[Any]", Any, BaseException | None]


def _resolve(results: list[Result]) -> None:
    """Runs in the event loop: hand each caller its result (if it is still waiting)."""
    for future, value, error in results:
        if future.done():  # cancelled by its caller; the operation happened regardless
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


class Writer:
    """Owns the connection; run ``start()`` once, then ``submit()`` from the event loop."""

    def __init__(
        self,
        connect: Callable[[], tuple[sqlite3.Connection, Any]],
        *,
        commit_interval: float,
        max_batch: int,
        on_open: Callable[[Any], None],
        on_commit: Callable[[Tx], None],
        on_batch: Callable[[int, float | None], None] | None = None,
        stats: BatchStats | None = None,
    ) -> None:
        """``connect()`` returns the connection and what ``on_open`` gets (both run in the
        writer thread, before ``start()`` returns). ``on_batch(operations, seconds)`` runs
        in the writer thread after every batch: ``seconds`` from BEGIN to the end of
        COMMIT, or None when the batch failed. ``stats``: where to count batches (shared
        with the other writer of ``store.writer: auto``, which is idle meanwhile)."""
        self._connect = connect
        self._on_open = on_open
        self._commit_interval = commit_interval
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[Op[Any] | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        # Makes "check closed, then enqueue" atomic against the thread's "close, then fail
        # what is queued", so no operation can slip in after the last drain and hang.
        self._gate = threading.Lock()
        self._stopped: asyncio.Future[None] | None = None
        self._batch_stats = BatchStats() if stats is None else stats
        #: Operations queued and not answered yet (event-loop side only), and what runs
        #: when that reaches zero (``on_drained``: ``store.writer: auto`` switches then).
        self._unanswered = 0
        self._drained: list[Callable[[], None]] = []

    # -- event-loop side -------------------------------------------------------------
    async def start(self) -> None:
        """Start the thread and connect; raises what the connection set-up raised."""
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        self._stopped = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(loop, started), name="smppgw-store", daemon=True
        )
        self._thread.start()
        await started

    def submit(self, fn: Callable[[Tx], T]) -> asyncio.Future[T]:
        """Queue ``fn``; the future resolves after the transaction carrying it committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.put(fn, future)
        return future

    def put(self, fn: Callable[[Tx], T], future: asyncio.Future[T]) -> None:
        """``submit`` with the caller's future (``store.writer: auto`` hands over the
        operations it held during a switch with the futures their callers already have)."""
        with self._gate:
            if not self._closed and self._thread is not None:
                self._unanswered += 1
                self._queue.put(Op(fn, future.get_loop(), future))
                return
        future.set_exception(StoreError("store is not open"))

    def on_drained(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (in the event loop) once every operation queued so far has
        been answered: at once (next turn) when none is outstanding."""
        if self._unanswered:
            self._drained.append(callback)
        else:
            asyncio.get_running_loop().call_soon(callback)

    def _answer(self, results: list[Result]) -> None:
        """Runs in the event loop: the callers hear, then whoever waits for quiescence."""
        _resolve(results)
        self._unanswered -= len(results)
        if not self._unanswered and self._drained:
            callbacks, self._drained = self._drained, []
            for callback in callbacks:
                callback()

    async def stop(self) -> None:
        """Finish everything queued so far, commit, close the connection, end the thread."""
        with self._gate:
            first = not self._closed and self._thread is not None
            self._closed = True
        if first:
            self._queue.put(_STOP)
        if self._stopped is not None:
            await asyncio.shield(self._stopped)

    def stats(self) -> StoreStats:
        return stats_of(self._batch_stats)

    # -- writer-thread side ----------------------------------------------------------
    def _run(self, loop: asyncio.AbstractEventLoop, started: asyncio.Future[None]) -> None:
        try:
            conn, initial = self._connect()
            self._on_open(initial)
        except BaseException as exc:
            self._closed = True
            failure: list[Result] = [(started, None, as_store_error(exc))]
            loop.call_soon_threadsafe(_resolve, failure)
            self._signal_stopped(loop)
            return
        success: list[Result] = [(started, None, None)]
        loop.call_soon_threadsafe(_resolve, success)
        try:
            self._loop(conn)
        except Exception as exc:  # a bug in the writer itself: never leave callers hanging
            with self._gate:
                self._closed = True
            self._fail_queued(StoreError(f"store writer stopped: {exc!r}"))
            log.exception("store writer stopped by a bug; every later operation will fail")
        finally:
            try:
                conn.close()
            finally:
                self._signal_stopped(loop)

    def _signal_stopped(self, loop: asyncio.AbstractEventLoop) -> None:
        stopped = self._stopped
        if stopped is not None:
            done: list[Result] = [(stopped, None, None)]
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(_resolve, done)

    def _loop(self, conn: sqlite3.Connection) -> None:
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        interval = self._commit_interval
        # Linger for stragglers only when the last batch showed concurrency: a lone
        # sequential caller must not pay commit_interval on every operation.
        linger = False
        while True:
            item = get()
            batch: list[Op[Any]] = []
            stop = False
            deadline = 0.0
            while True:
                if item is _STOP:
                    stop = True
                    break
                assert isinstance(item, Op)
                batch.append(item)
                if len(batch) >= self._max_batch:
                    break
                try:
                    item = get_nowait()
                    continue
                except queue.Empty:
                    pass
                if not linger or interval <= 0:
                    break
                if not deadline:
                    deadline = time.monotonic() + interval
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = get(timeout=remaining)
                except queue.Empty:
                    break
            if batch:
                self._run_batch(conn, batch)
                linger = len(batch) > 1
            if stop:
                self._drain_after_stop(conn)
                return

    def _fail_queued(self, error: StoreError) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Op):
                failed: list[Result] = [(item.future, None, error)]
                with contextlib.suppress(RuntimeError):
                    item.loop.call_soon_threadsafe(self._answer, failed)

    def _drain_after_stop(self, conn: sqlite3.Connection) -> None:
        """Operations queued after stop() was called (a race) still get an answer."""
        leftovers: list[Op[Any]] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Op):
                leftovers.append(item)
        if leftovers:
            self._run_batch(conn, leftovers)
        # A busy checkpoint is harmless: the next open replays the WAL.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Op[Any]]) -> None:
        outcome = run_batch(conn, [op.fn for op in batch])
        try:
            commit_or_fail(outcome, len(batch), self._batch_stats, self._on_batch, self._on_commit)
        finally:  # committed is committed: the callers hear so whatever happens above
            self._deliver(batch, outcome.results)

    def _deliver(
        self, batch: list[Op[Any]], results: list[tuple[Any, BaseException | None]]
    ) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Result]] = {}
        for op, (value, outcome) in zip(batch, results, strict=True):
            by_loop.setdefault(op.loop, []).append((op.future, value, outcome))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # caller's loop closed: nobody waits
                loop.call_soon_threadsafe(self._answer, items)


def commit_or_fail(
    outcome: Outcome,
    operations: int,
    stats: BatchStats,
    on_batch: Callable[[int, float | None], None] | None,
    on_commit: Callable[[Tx], None],
) -> None:
    """After a batch, on the side that keeps the counters (this thread, or the event loop
    for a writer process): statistics, the metrics observer, a failed batch logged, and
    the counter changes of a committed one applied (before any caller hears of it)."""
    stats.record(operations, outcome.seconds)
    if on_batch is not None:  # metrics must never stop the store
        try:
            on_batch(operations, outcome.seconds)
        except Exception:
            log.exception("store batch observer failed")
    if outcome.tx is None:
        log.warning("store batch failed", error=str(outcome.failure), operations=operations)
    else:
        on_commit(outcome.tx)


def stats_of(stats: BatchStats) -> StoreStats:
    return StoreStats(
        commits=stats.commits,
        failed_batches=stats.failed,
        operations=stats.operations,
        max_batch=stats.max_seen,
        last_commit_seconds=stats.last_commit,
        commit_seconds_total=stats.total,
    )
