"""Child processes for the tools and tests: mosquitto, ``smppgw sim``, ``smppgw run``.

The demo, the benchmark and the fault-injection tests all run the parts of a deployment as
separate OS processes (as production does) and need the same few things from each: its
output in a log file, a wait until it is ready (a port that accepts connections, a line it
prints or logs), SIGTERM with a grace period before SIGKILL, its exit code, and for the
benchmark the kernel's own CPU and memory accounting. This is the one place that does it.

An ``atexit`` hook terminates whatever is still running when the parent exits, so a run
that fails half-way leaves no daemon behind.

Ports: a child that cannot bind port 0 and report what it got (mosquitto, PostgreSQL,
redis-server, bearerbox, the gateway's metrics listener) is handed a port planned free
(bound to port 0, then closed). Another process can take that port before the child binds
it (an outgoing connection draws its local port from the same ephemeral range; the
machine is shared), and the child exits with "address already in use". :func:`fresh_ports`
is the one retry for that, used by every starter that plans ports: plan anew, start again;
:func:`start_planned` is that retry for the usual case, a child ready once it listens on
its planned port (mosquitto, PostgreSQL, redis-server, bearerbox, the benchmark's gateway).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

__all__ = [
    "PORT_ATTEMPTS",
    "Child",
    "ChildError",
    "PlannedServer",
    "PortAttempt",
    "ProcSample",
    "fresh_ports",
    "listens",
    "port_taken",
    "sample",
    "start_planned",
    "wait_port",
]

#: Starts of a child on ports planned free before giving up (see :func:`fresh_ports`).
PORT_ATTEMPTS = 3

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _terminate_leftovers() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        if proc.poll() is None:
            proc.kill()


class ChildError(RuntimeError):
    """A child process failed to start or died; the message has the end of its log."""


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One reading of a process: CPU seconds so far (user + system, all threads), resident
    set size now and its peak (``VmHWM``), in bytes."""

    at: float
    cpu: float
    rss: int
    hwm: int


def sample(pid: int) -> ProcSample:
    """Read ``/proc/<pid>/stat`` and ``/proc/<pid>/status`` (Linux)."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        stat = fh.read()
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)
    rss = hwm = 0
    with open(f"/proc/{pid}/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith(b"VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return ProcSample(time.monotonic(), cpu, rss, hwm)


def gone(pid: int) -> bool:
    """No process ``pid``, or a dead one not reaped yet (a zombie): for tests that check a
    process did not outlive what should have ended it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(b")") + 2 :].split()[0] in (b"Z", b"X")


class Child:
    """One child process with its output appended to ``log_path``.

    ``capture_stdout`` keeps stdout as a pipe (stderr still goes to the log) for children
    that announce their ports there (``smppgw sim``); ``own_session`` puts the child in its
    own session, so Ctrl-C in the terminal reaches only the parent, which stops children in
    its own order. ``start()`` may be called again after the child has exited.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        capture_stdout: bool = False,
        own_session: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.capture_stdout = capture_stdout
        self.own_session = own_session
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        #: Where this start's output begins in the log (earlier runs are before it).
        self._log_start = 0

    def start(self) -> Child:
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.capture_stdout else log,
                stderr=log if self.capture_stdout else subprocess.STDOUT,
                start_new_session=self.own_session,
                env=self.env,
            )
        _LIVE.add(self.proc)
        return self

    # ------------------------------------------------------------------ state

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exited(self) -> int | None:
        """Exit code when the process has ended, else None (also when never started)."""
        return self.proc.poll() if self.proc is not None else None

    def check(self) -> None:
        """Raise :class:`ChildError`, with the tail of this start's output, if the process
        has exited. This start's only: an earlier start's "address already in use" must
        not make another failure pass for a lost port (:func:`port_taken`)."""
        code = self.exited()
        if code is not None:
            tail = self.log_tail(this_start=True)
            raise ChildError(f"{self.name} exited with code {code}:\n{tail}")

    def sample(self) -> ProcSample:
        return sample(self.pid)

    def log_text(self) -> str:
        """Everything the child wrote, over all its starts."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, lines: int = 30, *, this_start: bool = False) -> str:
        """The last ``lines`` of the log (``this_start``: of what this start wrote)."""
        text = ""
        with contextlib.suppress(OSError), open(self.log_path, "rb") as fh:
            fh.seek(self._log_start if this_start else 0)
            text = fh.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ readiness

    def wait_port(self, host: str, port: int, timeout: float) -> None:
        """Until ``host:port`` accepts a connection; ChildError if the child exits first."""
        wait_port(host, port, timeout, self)

    async def wait_logged(self, marker: str, timeout: float) -> None:
        """Until this start's log holds ``marker``; ChildError on exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), open(self.log_path, "rb") as fh:
                fh.seek(self._log_start)
                if marker.encode() in fh.read():
                    return
            self.check()
            if time.monotonic() > deadline:
                raise ChildError(
                    f"{self.name}: no {marker!r} after {timeout} s:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.05)

    def read_stdout(self, patterns: Sequence[re.Pattern[bytes]], timeout: float) -> list[int]:
        """Read stdout until each pattern matched; the first group of each, as an int
        (the ports a child prints once bound). Raw reads: a buffered readline() would hide
        lines from select()."""
        assert self.proc is not None and self.proc.stdout is not None, "capture_stdout=True"
        fd = self.proc.stdout.fileno()
        found: list[int | None] = [None] * len(patterns)
        seen = b""
        deadline = time.monotonic() + timeout
        while None in found:
            if time.monotonic() > deadline:
                self.stop()
                raise ChildError(f"{self.name} did not start: {seen!r}\n{self.log_tail()}")
            ready, _, _ = select.select([fd], [], [], 0.2)
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                self.check()
                time.sleep(0.05 if ready else 0)
                continue
            seen += chunk
            for i, pattern in enumerate(patterns):
                if found[i] is None and (match := pattern.search(seen)) is not None:
                    found[i] = int(match.group(1))
        return [port for port in found if port is not None]

    # ------------------------------------------------------------------ ending

    def signal(self, sig: signal.Signals) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        """The exit code once the process has ended (it is not signalled);
        ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        assert self.proc is not None, f"{self.name} was never started"
        code = await asyncio.to_thread(self.proc.wait, timeout)
        self._ended(self.proc)
        return code

    def stop(self, timeout: float = 15.0, *, kill_after: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; the exit code (None if never
        started)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(kill_after)
        return self._ended(proc)

    async def astop(self, timeout: float = 15.0) -> int | None:
        """:meth:`stop` without blocking the event loop."""
        return await asyncio.to_thread(self.stop, timeout)

    def close(self) -> None:
        """:meth:`stop`, named like the other things a caller's ExitStack closes."""
        self.stop()

    def kill(self) -> int | None:
        """SIGKILL, as a power cut would: nothing gets to clean up."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
            proc.wait(10.0)
        return self._ended(proc)

    def _ended(self, proc: subprocess.Popen[bytes]) -> int | None:
        if proc.stdout is not None:
            proc.stdout.close()
        _LIVE.discard(proc)
        return proc.returncode


def wait_port(host: str, port: int, timeout: float, child: Child | None = None) -> None:
    """Until ``host:port`` accepts a TCP connection (made by ``child``'s listening socket,
    when given: another process that took the port planned for it and listens there must
    not pass for the child); ChildError if ``child`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None:
            child.check()
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            if child is None or listens(child.pid, port) is not False:
                return
        time.sleep(0.02)
    name = child.name if child is not None else "nothing"
    raise ChildError(f"{name}: nothing listens on {host}:{port} after {timeout} s")


# ---------------------------------------------------------------------------- ports


def listens(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds a socket listening on TCP ``port``, from /proc (the
    listening sockets' inodes in /proc/net/tcp*, the process's in /proc/PID/fd); None
    when /proc cannot say (not Linux, or no permission to read the process's fds)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh, None)
                for line in fh:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            continue
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except PermissionError:
        return None
    except OSError:
        return False if os.path.isdir("/proc/self/fd") else None
    for fd in fds:
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    return False


def port_taken(error: BaseException) -> bool:
    """Whether a child failed because a port planned for it was taken meanwhile: the end
    of its log (in the :class:`ChildError`'s message) says the address is in use, as
    mosquitto, PostgreSQL, redis-server, Kannel and Python (errno 98) all put it."""
    text = str(error).lower()
    return "address already in use" in text or "errno 98" in text


class PortAttempt:
    """One start of a child on ports planned for it (an item of :func:`fresh_ports`).

    As a context manager it swallows a :class:`ChildError` that :func:`port_taken` says
    was a lost port, unless this is the last attempt; anything else propagates."""

    __slots__ = ("lost", "number", "retry")

    def __init__(self, number: int, *, last: bool) -> None:
        #: 1 for the first start; ``number > 1``: the ports must be planned anew.
        self.number = number
        #: False on the last attempt: its failure propagates whatever the cause.
        self.retry = not last
        #: The failure this attempt swallowed (a port was taken), else None.
        self.lost: ChildError | None = None

    def __enter__(self) -> PortAttempt:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> bool:
        if isinstance(error, ChildError) and self.retry and port_taken(error):
            self.lost = error
            return True
        return False


def fresh_ports(*, may_replan: bool = True, attempts: int = PORT_ATTEMPTS) -> Iterator[PortAttempt]:
    """Attempts at starting a child on planned ports, until one does not lose a port::

        for attempt in fresh_ports():
            with attempt:
                if attempt.number > 1:
                    plan_new_ports()
                start_the_child_and_wait_until_ready()  # ChildError on failure
                return ...

    A start whose child failed because a planned port was taken is retried (the caller
    plans new ports, stopping what the failed start left running first); any other
    failure, or a lost port on the last attempt, propagates. Works the same in async code
    (``await`` inside the ``with``). ``may_replan=False``: one attempt (a restart on the
    port that clients already know, or a port the caller was given)."""
    if not may_replan:
        attempts = 1
    for number in range(1, attempts + 1):
        attempt = PortAttempt(number, last=number == attempts)
        yield attempt
        if attempt.lost is None:
            return


def start_planned(
    child: Child,
    host: str,
    port: int,
    *,
    replan: Callable[[], int],
    timeout: float,
    may_replan: bool = True,
    ready: Callable[[], None] | None = None,
) -> int:
    """Start ``child`` and wait until it listens on ``host:port`` (then until ``ready()``
    returns, when given); the port it listens on.

    When the child exits because a planned port was taken meanwhile (:func:`port_taken`),
    ``replan()`` plans new ports, rewrites what the child reads them from (its argv or
    config file) and returns the port to wait on; the child is started again, at most
    :data:`PORT_ATTEMPTS` times in all (once when ``may_replan`` is False: a restart on a
    port clients already know, or a port the caller was given). Any other failure
    raises its :class:`ChildError` at once, and a failed start leaves nothing running:
    the child is stopped before the error propagates."""
    try:
        for attempt in fresh_ports(may_replan=may_replan):
            with attempt:
                if attempt.number > 1:
                    child.stop()  # reaps the child that lost its port
                    port = replan()
                child.start()
                child.wait_port(host, port, timeout)
                if ready is not None:
                    ready()
                return port
    except ChildError:
        child.stop()
        raise
    raise AssertionError("unreachable: the last attempt raises")


class PlannedServer:
    """A server run as one :class:`Child` on ``host:port`` (mosquitto, PostgreSQL,
    redis-server): ``start()`` (or restart), ``kill()``, ``running``, ``pid``, its log.

    A port planned here (none given) that another process took before the first start
    bound it is planned anew (:func:`start_planned`); a restart keeps its port, which
    clients (and a broker's persisted sessions) know. A subclass sets ``host``, ``port``,
    ``_child`` and ``_may_replan`` (``port is None`` at construction), and defines
    ``_replan`` (a new port, written where the child reads it: argv or config file) and,
    when the open port is not yet "ready", ``_ready``."""

    #: ``start()``'s default timeout, seconds.
    START_TIMEOUT: ClassVar[float] = 10.0

    host: str
    port: int
    _child: Child
    #: The port was planned here (not given) and no start used it yet.
    _may_replan: bool

    @property
    def running(self) -> bool:
        return self._child.running

    @property
    def pid(self) -> int | None:
        """The running server's pid; None when stopped or killed."""
        return self._child.pid if self.running else None

    def start(self, timeout: float | None = None) -> Self:
        """Start (or restart) on its port; return once it is ready (the port accepts
        connections, then ``_ready``). ChildError (the end of this start's log) if not."""
        if self.running:
            return self
        wait = self.START_TIMEOUT if timeout is None else timeout
        self.port = start_planned(
            self._child,
            self.host,
            self.port,
            replan=self._replan,
            timeout=wait,
            may_replan=self._may_replan,
            ready=lambda: self._ready(wait),
        )
        self._may_replan = False
        return self

    def _replan(self) -> int:
        """A new port planned free, written where the child reads it; that port."""
        raise NotImplementedError

    def _ready(self, timeout: float) -> None:
        """After the port opened: until the server serves (nothing more by default)."""

    def kill(self) -> None:
        """SIGKILL, as a power cut would."""
        self._child.kill()

    def log_tail(self, lines: int = 40) -> str:
        return self._child.log_tail(lines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.host}:{self.port}, running={self.running})"
