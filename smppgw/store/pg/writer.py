"""Group commit on one PostgreSQL connection: the asyncio twin of ``store.writer``.

Why one connection and a queue rather than a pool: the store's callers are many small
concurrent coroutines (one per job outcome, per receipt); each COMMIT is a round trip and,
with ``synchronous_commit=on``, a WAL flush. Taking *everything* queued, running it in one
transaction and committing once gives PostgreSQL the same group commit SQLite gets from
the writer thread, keeps "a read sees every write acknowledged before it" for this
gateway, and leaves the cross-gateway concurrency to the database (row locks, ``SKIP
LOCKED``, unique keys), where it belongs.

An operation is ``async fn(tx)``: it runs inside the batch's transaction. As in the SQLite
writer, a batch runs first without SAVEPOINTs; if one operation raises on its own (a bad
argument, an unknown job, a constraint it broke) the batch is rolled back and replayed
with each operation in its own SAVEPOINT, so only that caller gets the error. A lost
connection, a server shutting down or a timeout fails the whole batch with
``StoreError`` (nothing acknowledged, callers retry or leave the job un-PUBACKed); the
next batch reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg

from smppgw.ops.logs import get_logger
from smppgw.store.model import StoreError, StoreStats

T = TypeVar("T")
log = get_logger("smppgw.store")

Connection = Any  # asyncpg.Connection (untyped)

#: Errors that say "the database, not this operation": the batch fails as a whole.
_ENVIRONMENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    OSError,
    TimeoutError,
)


@dataclass(slots=True)
class PgTx:
    """What an operation sees: the connection inside the open transaction, the batch's
    wall-clock time and this gateway's node id (owner of what it claims)."""

    conn: Connection
    now: float
    node: str


#: A merged form of one kind of operation: the arguments of several calls in, their
#: results out (in order), one statement for all of them.
Merged = Callable[[PgTx, list[Any]], Awaitable[list[Any]]]


class _Op(Generic[T]):
    __slots__ = ("args", "fn", "future", "kind")

    def __init__(
        self,
        fn: Callable[[PgTx], Awaitable[T]],
        future: asyncio.Future[T],
        kind: str | None = None,
        args: Any = None,
    ) -> None:
        self.fn = fn
        self.future = future
        #: Operations of one ``kind`` queued one after the other run as one merged call.
        self.kind = kind
        self.args = args


class PgWriter:
    """Owns the connection: ``start()``, then ``submit()``; ``stop()`` drains."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Connection]],
        *,
        node: str,
        max_batch: int = 5000,
        on_batch: Callable[[int, float | None], None] | None = None,
        merged: dict[str, Merged] | None = None,
    ) -> None:
        """``merged``: kind → the merged form of that kind of operation (see ``submit``)."""
        self._connect = connect
        self._merged = merged or {}
        self._node = node
        self._max_batch = max_batch
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Op[Any] | None] = asyncio.Queue()
        self._conn: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = True
        self._commits = self._failed = self._operations = self._max_seen = 0
        self._last_commit = self._commit_total = 0.0

    async def start(self) -> None:
        """Connect (raising StoreError when that fails) and start the batching task."""
        self._conn = await self._open()
        self._closed = False
        self._task = asyncio.create_task(self._loop(), name="smppgw-store-pg")

    async def _open(self) -> Connection:
        try:
            return await self._connect()
        except (*_ENVIRONMENT, asyncpg.PostgresError) as exc:
            raise _store_error(exc) from exc

    def submit(
        self, fn: Callable[[PgTx], Awaitable[T]], *, kind: str | None = None, args: Any = None
    ) -> asyncio.Future[T]:
        """Queue ``fn``; the future resolves after its transaction committed.

        With ``kind`` (a key of ``merged``) and ``args``: when several operations of that
        kind are queued next to each other they run as one merged call with their
        ``args`` (one round trip for all: per-job calls such as ``mark_submitted`` from
        many concurrent coroutines). If the merged call raises, the batch is replayed
        with each operation's own ``fn``, so only a failing one fails."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(StoreError("store is not open"))
        else:
            self._queue.put_nowait(_Op(fn, future, kind, args))
        return future

    async def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        if self._task is not None:
            await asyncio.shield(self._task)
        if self._conn is not None:
            with contextlib.suppress(*_ENVIRONMENT, asyncpg.PostgresError):
                await self._conn.close(timeout=5)
            self._conn = None

    def stats(self) -> StoreStats:
        return StoreStats(
            commits=self._commits,
            failed_batches=self._failed,
            operations=self._operations,
            max_batch=self._max_seen,
            last_commit_seconds=self._last_commit,
            commit_seconds_total=self._commit_total,
        )

    # -- the task ----------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            item = await self._queue.get()
            batch: list[_Op[Any]] = []
            stop = item is None
            if item is not None:
                batch.append(item)
            while len(batch) < self._max_batch and not self._queue.empty():
                more = self._queue.get_nowait()
                if more is None:
                    stop = True
                else:
                    batch.append(more)
            if batch:
                try:
                    await self._run_batch(batch)
                except Exception as exc:  # a bug here must never leave callers hanging
                    log.exception("store writer bug")
                    _deliver(
                        [(op.future, None, StoreError(f"store writer: {exc!r}")) for op in batch]
                    )
            if stop and self._queue.empty():
                return

    async def _run_batch(self, batch: list[_Op[Any]]) -> None:
        started = time.perf_counter()
        try:
            conn = await self._connection()
            results = await self._run_fast(conn, batch)
            if results is None:
                results = await self._run_guarded(conn, batch)
        except Exception as exc:
            error = (
                _store_error(exc)
                if isinstance(exc, (*_ENVIRONMENT, asyncpg.PostgresError))
                else exc
            )
            self._failed += 1
            log.warning("store batch failed", error=str(exc), operations=len(batch))
            await self._reset()
            self._observe(len(batch), None)
            _deliver([(op.future, None, error) for op in batch])
            return
        elapsed = time.perf_counter() - started
        self._commits += 1
        self._last_commit = elapsed
        self._commit_total += elapsed
        self._operations += len(batch)
        self._max_seen = max(self._max_seen, len(batch))
        self._observe(len(batch), elapsed)
        _deliver(results)

    async def _connection(self) -> Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._open()
        return self._conn

    async def _reset(self) -> None:
        """After a failed batch the connection's state is unknown (a server that went
        away, a protocol error mid-statement): drop it; the next batch reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _run_fast(self, conn: Connection, batch: list[_Op[Any]]) -> list[Any] | None:
        tx = PgTx(conn, time.time(), self._node)
        await conn.execute("BEGIN")
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            i = 0
            while i < len(batch):
                op = batch[i]
                end = i + 1
                if op.kind is not None and op.kind in self._merged:
                    while end < len(batch) and batch[end].kind == op.kind:
                        end += 1
                if end - i > 1:
                    group = batch[i:end]
                    assert op.kind is not None
                    values = await self._merged[op.kind](tx, [o.args for o in group])
                    results.extend((o.future, v, None) for o, v in zip(group, values, strict=True))
                else:
                    results.append((op.future, await op.fn(tx), None))
                i = end
        except _ENVIRONMENT:
            raise
        except Exception:
            await conn.execute("ROLLBACK")
            return None
        await conn.execute("COMMIT")
        return results

    async def _run_guarded(self, conn: Connection, batch: list[_Op[Any]]) -> list[Any]:
        tx = PgTx(conn, time.time(), self._node)
        await conn.execute("BEGIN")
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        for op in batch:
            await conn.execute("SAVEPOINT op")
            try:
                value = await op.fn(tx)
            except _ENVIRONMENT:
                raise
            except Exception as exc:
                await conn.execute("ROLLBACK TO SAVEPOINT op")
                error = _store_error(exc) if isinstance(exc, asyncpg.PostgresError) else exc
                results.append((op.future, None, error))
            else:
                await conn.execute("RELEASE SAVEPOINT op")
                results.append((op.future, value, None))
        await conn.execute("COMMIT")
        return results

    def _observe(self, operations: int, seconds: float | None) -> None:
        if self._on_batch is not None:
            try:
                self._on_batch(operations, seconds)
            except Exception:
                log.exception("store batch observer failed")


def _deliver(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in results:
        if future.done():  # its caller was cancelled; the operation happened regardless
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


def _store_error(exc: BaseException) -> StoreError:
    error = StoreError(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
