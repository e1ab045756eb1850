"""The store writer process: ``python -m smppgw.store.worker FD`` (started by
``smppgw.store.process.ProcessWriter``), owning the SQLite connection.

Why a process: with the writer as a thread, the event loop and the writer share one GIL,
and the gateway stops at one core however many the machine has (issue 13; see
docs/performance.md). Here the writer has an interpreter of its own.

It reads the operations the gateway sends on the socket ``FD`` (``smppgw.store.frames``),
runs *everything* that has arrived (up to ``max_batch``) as one transaction with the very
batch logic of the writer thread (``smppgw.store.batch``), and sends back each operation's
result and the batch's counter changes; the gateway applies those and then resolves its
callers' futures, in order.

Its life is the gateway's: it ignores SIGINT and SIGTERM (a Ctrl-C or a ``kill`` of the
process group must not end it before the gateway has committed and stopped it in order),
and it exits when the socket reaches end of file. When the gateway dies (even by
``kill -9``) the kernel kills it at once (Linux ``PR_SET_PDEATHSIG``), as it would a
writer thread: a batch it was running is rolled back by SQLite (the gateway had
acknowledged none of it), and no commit of the old writer can land after a restarted
gateway has read its counters at open. (The signal follows the *thread* that started the
child: the event loop's, which lives as long as the store.) Elsewhere the end of file is
the only signal, after the batch in progress.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import socket
import sqlite3
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

from smppgw.collector import collect_seldom
from smppgw.store import frames
from smppgw.store.batch import Outcome, Result, Tx, run_batch
from smppgw.store.model import StoreError

Op = Callable[[Tx], Any]
#: ``<sys/prctl.h>``
PR_SET_PDEATHSIG = 1


class _Unreadable:
    """Stands for an operation whose frame could not be unpickled: its caller gets why."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __call__(self, tx: Tx) -> Any:
        raise StoreError(f"store writer process could not read the operation: {self.error!r}")


class Channel:
    """The child's end of the socket: blocking reads of whole frames, writes of answers."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = frames.FrameBuffer()
        self.eof = False

    def read(self) -> list[tuple[bytes, int, bytes]]:
        """Frames arrived so far, waiting for the first; sets ``eof`` when the gateway has
        gone."""
        got = self.buffer.frames()
        while not got and not self.eof:
            self._recv(block=True)
            self._drain()
            got = self.buffer.frames()
        return got

    def poll(self) -> list[tuple[bytes, int, bytes]]:
        """Frames that have arrived, without waiting."""
        self._drain()
        return self.buffer.frames()

    def _recv(self, *, block: bool) -> bool:
        try:
            data = self.sock.recv(1 << 20, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer.feed(data)
        return True

    def _drain(self) -> None:
        while not self.eof and self._recv(block=False):
            pass

    def send(self, kind: bytes, count: int, body: Any) -> None:
        try:
            data = frames.frame(kind, count, body)
        except Exception:  # an unpicklable value or exception: say what it was instead
            if kind != frames.RESULTS:
                raise
            data = frames.frame(kind, count, _picklable(body))
        self.sock.sendall(data)


def _picklable(body: tuple[list[Result], Any, Any]) -> tuple[list[Result], Any, Any]:
    results, counters, seconds = body
    clean: list[Result] = []
    for value, error in results:
        try:
            pickle.dumps((value, error), frames.PROTOCOL)
            clean.append((value, error))
        except Exception as exc:
            what = repr(error) if error is not None else f"a result that cannot be sent: {exc!r}"
            clean.append((None, StoreError(what)))
    return clean, counters, seconds


def serve(channel: Channel) -> None:
    """Until STOP or end of file: read operations, run them in batches, answer."""
    config = channel.read()
    if not config or config[0][0] != frames.CONFIG:
        return
    path, body = pickle.loads(config[0][2])
    sys.path[:] = path  # the parent's, so that what it pickles by reference imports here
    connect, max_batch = pickle.loads(body)
    try:
        conn, initial = connect()
    except Exception as exc:
        channel.send(frames.OPENED, 0, (None, exc))
        return
    channel.send(frames.OPENED, 0, (initial, None))
    collect_seldom()
    try:
        _loop(channel, conn, max_batch)
    finally:
        conn.close()


def _loop(channel: Channel, conn: sqlite3.Connection, max_batch: int) -> None:
    """No lingering for stragglers here (``commit_interval``): the gateway holds what comes
    while a batch runs, and applies the interval before it sends the next frame."""
    pending: deque[Op] = deque()
    stopping = False

    def take(got: list[tuple[bytes, int, bytes]]) -> None:
        nonlocal stopping
        for kind, count, body in got:
            if kind == frames.STOP:
                stopping = True
            elif kind == frames.OPS:
                try:
                    pending.extend(pickle.loads(body))
                except Exception as exc:
                    pending.extend([_Unreadable(exc)] * count)

    while True:
        if not pending and not stopping:
            take(channel.read())
        else:
            take(channel.poll())
        if pending:
            n = min(len(pending), max_batch)
            batch = [pending.popleft() for _ in range(n)]
            outcome = run_batch(conn, batch)
            if not _answer(channel, outcome):
                return  # the gateway has gone: nobody to answer
        elif channel.eof:
            return
        if stopping and not pending:
            with contextlib.suppress(sqlite3.Error):  # busy: the next open replays the WAL
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            with contextlib.suppress(OSError):
                channel.send(frames.STOPPED, 0, None)
            return


def _answer(channel: Channel, outcome: Outcome) -> bool:
    tx = outcome.tx
    counters = None
    if tx is not None:
        counters = (dict(tx.depth), tx.outbox, dict(tx.held))
    failure = None if outcome.failure is None else str(outcome.failure)
    try:
        channel.send(
            frames.RESULTS,
            len(outcome.results),
            (outcome.results, counters, (outcome.seconds, failure)),
        )
    except OSError:
        return False
    return True


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the parent dies (Linux); and if it already has, exit now."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # died before the line above: nobody to serve
        sys.exit(0)


def main(argv: list[str]) -> int:
    """``argv``: the socket's file descriptor and the parent's process id."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(int(argv[1]))
    sock = socket.socket(fileno=int(argv[0]))
    try:
        serve(Channel(sock))
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
