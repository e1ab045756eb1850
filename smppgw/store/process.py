"""``ProcessWriter``: the store's writer as a child process (``store.writer: process``).

Same interface and guarantees as the writer thread (``smppgw.store.writer.Writer``):
``submit(fn)`` returns a future that resolves after the transaction carrying ``fn``
committed; the counter changes of a batch are applied before any of its callers hears.
What differs is where ``fn`` runs: in ``python -m smppgw.store.worker``, so ``fn`` must
pickle (a module-level function, a ``functools.partial`` of one over plain data, or a
``smppgw.store.calls.Call``).

Group commit moves to this side of the socket: while the child runs a batch, operations
wait here, and go as one frame when its answer arrives (the next batch: everything that
waited); when the child is idle, the operations of one event-loop turn go at the turn's
end (``call_soon``). The child would only have read them after its commit anyway; holding
them here costs it nothing and saves a send and a receive per turn on both sides.
``commit_interval`` is applied here too: after a batch of several operations, the next
frame waits that long. Answers come back in the order the operations went, so the
futures waiting are a plain FIFO.

If the child dies (killed, crashed), every waiting caller and every later one gets a
``StoreError`` and ``lost`` is set with the reason: the writer is not restarted, because
an operation the child ran may or may not have committed and the gateway's in-memory
counters no longer match the file; ``lost_event`` is set, the gateway stops
(``smppgw.gateway`` waits on it through ``Store.writer_lost``) and its next start recovers
from the database, as after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import subprocess
import sys
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, TypeVar

from smppgw.ops.logs import get_logger
from smppgw.store import frames
from smppgw.store.batch import BatchStats, Outcome, Result, Tx
from smppgw.store.model import StoreError, StoreStats
from smppgw.store.writer import commit_or_fail, stats_of

T = TypeVar("T")
log = get_logger("smppgw.store")

#: How long ``stop()`` waits for the child to exit after it said STOPPED (or died).
EXIT_TIMEOUT = 10.0


class _Channel(asyncio.Protocol):
    """The parent's end of the socket: frames in, handed to the writer."""

    def __init__(self, writer: ProcessWriter) -> None:
        self._writer = writer
        self._buffer = frames.FrameBuffer()

    def data_received(self, data: bytes) -> None:
        self._buffer.feed(data)
        for kind, count, body in self._buffer.frames():
            self._writer._received(kind, count, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self._writer._lost_channel(exc)


class ProcessWriter:
    """Starts the child in ``start()``; ``submit()`` from the event loop it started in."""

    def __init__(
        self,
        connect: Callable[[], tuple[Any, Any]],
        *,
        commit_interval: float,
        max_batch: int,
        on_open: Callable[[Any], None],
        on_commit: Callable[[Tx], None],
        on_batch: Callable[[int, float | None], None] | None = None,
        stats: BatchStats | None = None,
    ) -> None:
        """``connect`` runs in the child (so it must pickle) and returns the connection and
        what ``on_open`` gets in this process (the counters read at open). ``stats``: as
        for the writer thread (shared by the two writers of ``store.writer: auto``)."""
        self._connect = connect
        self._commit_interval = commit_interval
        self._max_batch = max_batch
        self._on_open = on_open
        self._on_commit = on_commit
        self._on_batch = on_batch
        self._stats = BatchStats() if stats is None else stats
        #: What runs once nothing is outstanding (``on_drained``).
        self._drained: list[Callable[[], None]] = []
        self._outgoing: list[Callable[[Tx], Any]] = []
        self._waiting: deque[asyncio.Future[Any]] = deque()
        #: Operations sent and not answered yet: while there are, new ones wait here.
        self._in_child = 0
        self._linger: asyncio.TimerHandle | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opened: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._closed = True
        #: Why the child is gone when it went without being stopped (None while it runs).
        self.lost: str | None = None
        self.lost_event = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Start the child and open the database in it; raises what opening raised."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        parent, child = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "smppgw.store.worker",
                    str(child.fileno()),
                    str(os.getpid()),
                ],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self._opened = loop.create_future()
        self._stopped = loop.create_future()
        transport, _ = await loop.connect_accepted_socket(lambda: _Channel(self), parent)
        self._transport = transport  # uvloop's is no subclass of asyncio.Transport
        self._transport.write(
            frames.frame(
                frames.CONFIG,
                0,
                # The import path apart, unpickled first: operations are pickled by
                # reference to their module, which must import in the child too.
                (
                    sys.path,
                    pickle.dumps((self._connect, self._max_batch), frames.PROTOCOL),
                ),
            )
        )
        self._closed = False
        try:
            await self._opened
        except BaseException:
            self._closed = True
            await self._wait_exit()
            raise

    def submit(self, fn: Callable[[Tx], T]) -> asyncio.Future[T]:
        """Queue ``fn`` for this turn's frame; resolves after its batch committed."""
        loop = self._loop  # set by start: get_running_loop() is a system call (aio.py)
        future: asyncio.Future[T] = (loop or asyncio.get_running_loop()).create_future()
        self.put(fn, future)
        return future

    def put(self, fn: Callable[[Tx], T], future: asyncio.Future[T]) -> None:
        """``submit`` with the caller's future (as ``Writer.put``)."""
        if self._closed:
            future.set_exception(StoreError(self.lost or "store is not open"))
            return
        if not self._outgoing and not self._in_child and self._linger is None:
            future.get_loop().call_soon(self._flush)  # the child is idle: at turn's end
        self._outgoing.append(fn)
        self._waiting.append(future)

    def on_drained(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once every operation queued so far has been answered (its
        batch's results arrived, or the child was lost): next turn when none is."""
        if self._waiting:
            self._drained.append(callback)
        else:
            asyncio.get_running_loop().call_soon(callback)

    def _quiescent(self) -> None:
        if not self._waiting and self._drained:
            callbacks, self._drained = self._drained, []
            for callback in callbacks:
                callback()

    async def stop(self) -> None:
        """Send what is queued, let the child commit it, checkpoint and exit."""
        if self._linger is not None:
            self._linger.cancel()
        if not self._closed and self._transport is not None:
            self._flush()
            self._closed = True
            self._transport.write(frames.frame(frames.STOP, 0, None))
        if self._stopped is not None:
            await asyncio.shield(self._stopped)
        await self._wait_exit()

    def stats(self) -> StoreStats:
        return stats_of(self._stats)

    @property
    def pid(self) -> int | None:
        """The child's process id (while it runs)."""
        return None if self._proc is None else self._proc.pid

    # -- sending ---------------------------------------------------------------------
    def _flush(self) -> None:
        self._linger = None
        ops, self._outgoing = self._outgoing, []
        if not ops or self._transport is None or self._transport.is_closing():
            return
        sent = len(ops)
        data: bytes | None
        try:
            data = frames.frame(frames.OPS, sent, ops)
        except Exception:
            data, sent = self._frame_picklable(ops)
        if data is not None:
            self._in_child += sent
            self._transport.write(data)

    def _frame_picklable(self, ops: list[Callable[[Tx], Any]]) -> tuple[bytes | None, int]:
        """The frame without the operations that do not pickle: their callers get the
        error now (a programming error: every Store method submits picklable ones)."""
        start = len(self._waiting) - len(ops)
        keep: list[Callable[[Tx], Any]] = []
        kept_futures: list[asyncio.Future[Any]] = []
        waiting = list(self._waiting)
        for fn, future in zip(ops, waiting[start:], strict=True):
            try:
                pickle.dumps(fn, frames.PROTOCOL)
            except Exception as exc:
                future.set_exception(
                    TypeError(f"store operation cannot go to the writer process: {exc}")
                )
            else:
                keep.append(fn)
                kept_futures.append(future)
        self._waiting = deque(waiting[:start] + kept_futures)
        return (frames.frame(frames.OPS, len(keep), keep) if keep else None), len(keep)

    # -- receiving (event loop) ------------------------------------------------------
    def _received(self, kind: bytes, count: int, body: bytes) -> None:
        if kind == frames.RESULTS:
            results, counters, (seconds, failure) = pickle.loads(body)
            self._batch(results, counters, seconds, failure)
        elif kind == frames.OPENED:
            initial, error = pickle.loads(body)
            assert self._opened is not None
            if error is not None:
                self._opened.set_exception(error)
            else:
                self._on_open(initial)
                self._opened.set_result(None)
        elif kind == frames.STOPPED and self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def _batch(
        self,
        results: list[Result],
        counters: tuple[dict[tuple[str, int], int], int, dict[str, int]] | None,
        seconds: float | None,
        failure: str | None,
    ) -> None:
        tx: Tx | None = None
        if counters is not None:
            depth, outbox, held = counters
            tx = Tx(None, 0.0, Counter(depth), outbox, Counter(held))  # type: ignore[arg-type]
        outcome = Outcome(results, tx, seconds, None if failure is None else StoreError(failure))
        waiting = self._waiting
        futures = [waiting.popleft() for _ in range(len(results))]
        self._in_child -= len(results)
        if self._outgoing and not self._in_child and self._linger is None:
            # What waited while the child ran this batch: the next batch, at once, or
            # after commit_interval when this one showed concurrency.
            if self._commit_interval > 0 and len(results) > 1 and self._loop is not None:
                self._linger = self._loop.call_later(self._commit_interval, self._flush)
            else:
                self._flush()
        try:
            commit_or_fail(outcome, len(results), self._stats, self._on_batch, self._on_commit)
        finally:  # committed is committed: the callers hear so whatever happens above
            for future, (value, error) in zip(futures, results, strict=True):
                if future.done():  # cancelled by its caller; the operation happened
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(value)
            self._quiescent()

    def _lost_channel(self, exc: Exception | None) -> None:
        """The socket closed: after STOPPED that is the end; otherwise the child died."""
        stopped = self._stopped is not None and self._stopped.done()
        if not stopped:
            code = None if self._proc is None else self._proc.poll()
            reason = f"store writer process exited (code {code})"
            if exc is not None:
                reason += f": {exc}"
            self.lost = reason
            self._closed = True
            log.error("store writer process lost", reason=reason)
            error = StoreError(reason)
            while self._waiting:
                future = self._waiting.popleft()
                if not future.done():
                    future.set_exception(error)
            self._outgoing = []
            if self._linger is not None:
                self._linger.cancel()
                self._linger = None
            if self._opened is not None and not self._opened.done():
                self._opened.set_exception(error)
            if self._stopped is not None:
                self._stopped.set_result(None)
            self.lost_event.set()
            self._quiescent()

    async def _wait_exit(self) -> None:
        proc = self._proc
        if self._transport is not None:
            self._transport.close()
        if proc is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, proc.wait), EXIT_TIMEOUT)
        except TimeoutError:
            log.error("store writer process did not exit; killing it", pid=proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await loop.run_in_executor(None, proc.wait)
