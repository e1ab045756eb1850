"""The one thread that owns the SQLite connection, with group commit.

Why a thread and one connection: SQLite allows one writer at a time, and a COMMIT is the
expensive part (a WAL append, and with ``synchronous=FULL`` an fsync). The event loop must
never block on it. So every operation is a small function queued to this thread; the
thread takes *everything* pending, runs it in one transaction and commits once ("group
commit"), then resolves all the callers' futures with one ``call_soon_threadsafe`` per
batch. Under load a batch carries hundreds of operations for the price of one commit;
when idle an operation commits alone, at once.

A batch first runs without SAVEPOINTs (two statements per operation saved). If an
operation fails on its own (a bad argument, an unknown job), the batch is rolled back and
replayed with each operation inside a SAVEPOINT, so that one is rolled back alone and its
caller gets the error while the rest of the batch commits. Operations are therefore
functions of the database and their arguments: running one twice, the first time rolled
back, must do what running it once does. An environmental error (``database is locked``,
``disk is full``, I/O error) or a failed COMMIT rolls back the whole batch and every
caller in it gets a ``StoreError``; the thread keeps running and the next batch tries
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from smppgw.ops.logs import get_logger
from smppgw.store.model import StoreError, StoreStats

T = TypeVar("T")
log = get_logger("smppgw.store")


@dataclass(slots=True)
class Tx:
    """What an operation sees: the connection inside an open transaction, plus the
    in-memory counters it changes (applied only if the batch commits)."""

    conn: sqlite3.Connection
    #: Wall-clock time at the start of the batch.
    now: float
    #: (carrier, lane) → change in queued jobs, for this operation.
    depth: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: Change in outbox rows, for this operation.
    outbox: int = 0
    #: hold reason → change in held jobs, for this operation.
    held: Counter[str] = field(default_factory=Counter)


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
        connect: Callable[[], sqlite3.Connection],
        *,
        commit_interval: float,
        max_batch: int,
        on_commit: Callable[[Tx], None],
        on_batch: Callable[[int, float | None], None] | None = None,
    ) -> None:
        """``on_batch(operations, seconds)`` runs in the writer thread after every batch:
        ``seconds`` from BEGIN to the end of COMMIT, or None when the batch failed."""
        self._connect = connect
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
        # statistics (plain ints/floats: written by the thread, read anywhere)
        self._commits = 0
        self._failed = 0
        self._operations = 0
        self._max_seen = 0
        self._last_commit = 0.0
        self._commit_total = 0.0

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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._gate:
            if not self._closed and self._thread is not None:
                self._queue.put(Op(fn, loop, future))
                return future
        future.set_exception(StoreError("store is not open"))
        return future

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
        return StoreStats(
            commits=self._commits,
            failed_batches=self._failed,
            operations=self._operations,
            max_batch=self._max_seen,
            last_commit_seconds=self._last_commit,
            commit_seconds_total=self._commit_total,
        )

    # -- writer-thread side ----------------------------------------------------------
    def _run(self, loop: asyncio.AbstractEventLoop, started: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._closed = True
            failure: list[Result] = [(started, None, _as_store_error(exc))]
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
                    item.loop.call_soon_threadsafe(_resolve, failed)

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
        started = time.perf_counter()
        now = time.time()
        try:
            ran = self._run_fast(conn, batch, now)
            if ran is None:  # an operation raised: replay, each in its own SAVEPOINT
                ran = self._run_guarded(conn, batch, now)
            batch_tx, results = ran
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            error: BaseException = _as_store_error(exc)
            results = [(op, None, error) for op in batch]
            self._failed += 1
            log.warning("store batch failed", error=str(exc), operations=len(batch))
            self._observe(len(batch), None)
        else:
            self._commits += 1
            elapsed = time.perf_counter() - started
            self._last_commit = elapsed
            self._commit_total += elapsed
            self._observe(len(batch), elapsed)
            try:
                self._on_commit(batch_tx)
            finally:  # committed is committed: the callers hear so whatever happens here
                self._deliver(batch, results)
            return
        self._deliver(batch, results)

    def _run_fast(
        self, conn: sqlite3.Connection, batch: list[Op[Any]], now: float
    ) -> tuple[Tx, list[tuple[Op[Any], Any, BaseException | None]]] | None:
        """The batch in one transaction without SAVEPOINTs (two statements per operation
        saved: nearly every batch has no failing operation). None, with the transaction
        rolled back, when an operation raised: the caller replays the batch guarded."""
        conn.execute("BEGIN IMMEDIATE")
        tx = Tx(conn, now)
        results: list[tuple[Op[Any], Any, BaseException | None]] = []
        try:
            for op in batch:
                results.append((op, op.fn(tx), None))
        except (sqlite3.OperationalError, sqlite3.InternalError):
            raise  # the database, not an operation: fail the batch
        except Exception:
            conn.execute("ROLLBACK")
            return None
        return tx, results

    def _run_guarded(
        self, conn: sqlite3.Connection, batch: list[Op[Any]], now: float
    ) -> tuple[Tx, list[tuple[Op[Any], Any, BaseException | None]]]:
        """The batch with each operation in a SAVEPOINT, so one that fails on its own is
        rolled back alone and its caller gets the error while the rest commits."""
        batch_tx = Tx(conn, now)
        results: list[tuple[Op[Any], Any, BaseException | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        for op in batch:
            tx = Tx(conn, now)
            conn.execute("SAVEPOINT op")
            try:
                value = op.fn(tx)
            except (sqlite3.OperationalError, sqlite3.InternalError):
                raise
            except Exception as exc:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                results.append((op, None, _as_store_error(exc)))
            else:
                conn.execute("RELEASE op")
                batch_tx.depth.update(tx.depth)
                batch_tx.outbox += tx.outbox
                results.append((op, value, None))
        return batch_tx, results

    def _observe(self, operations: int, seconds: float | None) -> None:
        """Metrics must never stop the store: a failing observer is logged, not raised."""
        if self._on_batch is not None:
            try:
                self._on_batch(operations, seconds)
            except Exception:
                log.exception("store batch observer failed")

    def _deliver(
        self, batch: list[Op[Any]], results: list[tuple[Op[Any], Any, BaseException | None]]
    ) -> None:
        self._operations += len(batch)
        self._max_seen = max(self._max_seen, len(batch))
        by_loop: dict[asyncio.AbstractEventLoop, list[Result]] = {}
        for op, value, outcome in results:
            by_loop.setdefault(op.loop, []).append((op.future, value, outcome))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # caller's loop closed: nobody waits
                loop.call_soon_threadsafe(_resolve, items)


def _as_store_error(exc: BaseException) -> BaseException:
    """sqlite errors become StoreError (with the cause kept); anything else is a caller's
    mistake or a bug and keeps its own type so it is not mistaken for "try again"."""
    if isinstance(exc, sqlite3.Error):
        error = StoreError(f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error
    return exc
