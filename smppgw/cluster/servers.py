"""A throw-away PostgreSQL and redis-server on free loopback ports, for the tests
(tests/support/servers.py) and ``smppgw bench e2e --backend postgres``.

Why real servers in tests: what the cluster relies on (``FOR UPDATE SKIP LOCKED``,
advisory locks, unique keys across connections, a Lua script run atomically, a server
that goes away and comes back) is server behaviour; a mock would only echo our
assumptions.

PostgreSQL: ``initdb`` into a private temporary directory, then the ``postgres`` server
itself as a foreground :class:`smppgw.procs.Child` (rather than ``pg_ctl start``, which
detaches it): the child is then ours to stop, kill -9 or restart, and the atexit hook of
``smppgw.procs`` stops it even when a test run dies half-way, so no daemon is left behind.
``initdb`` and ``postgres`` refuse to run as root: as root (CI) both run as the
unprivileged ``postgres`` system user (created by the Debian package) through
``setpriv``, and the directory is handed to that user. The unix socket lives in the same
directory, never in /var/run/postgresql.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from smppgw.mqtt.broker import free_port
from smppgw.procs import Child, ChildError, PlannedServer

__all__ = [
    "Postgres",
    "Redis",
    "ServerMissing",
    "find_postgres_bin",
    "find_redis",
]


class ServerMissing(RuntimeError):
    """The binaries are not installed here; the message says what to install."""


def find_postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding initdb and postgres (Debian
    keeps them off PATH), else the directory of an ``initdb`` on PATH, else None."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda path: int(Path(path).parent.name) if Path(path).parent.name.isdigit() else 0,
        reverse=True,
    )
    for directory in candidates:
        if os.access(os.path.join(directory, "initdb"), os.X_OK):
            return Path(directory)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def find_redis() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


def _as_user() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that drops root to the ``postgres`` user, and that user."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise ServerMissing(
            "running as root and there is no 'postgres' user to run initdb as "
            "(apt-get install postgresql creates it)"
        ) from None
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    prefix = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
    return prefix, user


class Postgres(PlannedServer):
    """One throw-away PostgreSQL cluster: ``start()``, ``stop()`` (fast shutdown),
    ``kill()`` (SIGKILL: crash recovery at the next start), ``close()`` (stop and remove
    the directory). ``durable=False`` turns fsync off (tests: faster); commits still
    write their WAL before returning, so a kill -9 of the server loses no committed
    transaction, only an OS crash could. The benchmark runs it so too (see
    ``smppgw.bench.scenarios._cluster_servers``)."""

    SUPERUSER = "postgres"
    START_TIMEOUT = 30.0

    def __init__(self, *, port: int | None = None, durable: bool = False) -> None:
        bindir = find_postgres_bin()
        if bindir is None:
            raise ServerMissing("PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir = bindir
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port(self.host)
        self.dir = Path(tempfile.mkdtemp(prefix="smppgw-pg-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self._prefix, user = _as_user()
        if user is not None:
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self._initdb(user)
        self._may_replan = port is None
        self._settings = {
            "listen_addresses": self.host,
            "unix_socket_directories": str(self.dir),
            "max_connections": "200",
            "shared_buffers": "64MB",
        }
        if not durable:
            self._settings.update(fsync="off", full_page_writes="off")
        self._child = Child("postgres", self._argv(), self.log_path)

    def _argv(self) -> list[str]:
        argv = [*self._prefix, str(self.bindir / "postgres"), "-D", str(self.data)]
        for key, value in {**self._settings, "port": str(self.port)}.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def _initdb(self, user: pwd.struct_passwd | None) -> None:
        argv = [
            *self._prefix,
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=self.dir)
        if done.returncode != 0:
            raise ChildError(f"initdb failed ({done.returncode}):\n{done.stderr[-2000:]}")
        if user is not None:  # the log file is written by the server, as that user
            self.log_path.touch()
            os.chown(self.log_path, user.pw_uid, user.pw_gid)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.SUPERUSER}@{self.host}:{self.port}/{database}"

    def _replan(self) -> int:
        """A new free port, in the server's argv (a first start lost its port)."""
        self.port = free_port(self.host)
        self._child.argv = self._argv()
        return self.port

    def _ready(self, timeout: float) -> None:
        """The port opens before crash recovery ends: wait until a query succeeds."""
        deadline = time.monotonic() + timeout
        while True:
            done = self._psql("SELECT 1", check=False)
            if done.returncode == 0:
                return
            self._child.check()
            if time.monotonic() > deadline:
                tail = self._child.log_tail(this_start=True)
                raise ChildError(f"postgres not ready: {done.stderr}\n{tail}")
            time.sleep(0.1)

    def _psql(
        self, sql: str, database: str = "postgres", *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            str(self.bindir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            self.SUPERUSER,
            "-d",
            database,
            "-At",
            "-c",
            sql,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise ChildError(f"psql {sql!r} failed: {done.stderr}")
        return done

    def query(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql; its unaligned output (for assertions and set-up)."""
        return self._psql(sql, database).stdout.strip()

    def create_database(self, name: str | None = None) -> str:
        """A fresh empty database; returns its DSN."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.query(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        name = dsn.rsplit("/", 1)[1]
        self._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', check=False)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGINT (fast shutdown: SIGTERM would wait for every client to leave)."""
        self._child.signal(signal.SIGINT)
        self._child.stop(timeout)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis(PlannedServer):
    """One redis-server on a free loopback port, nothing saved to disk; ``kill()`` and
    ``start()`` again (same port) for the "Redis went away" tests."""

    START_TIMEOUT = 15.0

    def __init__(self, *, port: int | None = None) -> None:
        binary = find_redis()
        if binary is None:
            raise ServerMissing("redis-server is not installed (apt-get install redis-server)")
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port(self.host)
        self._may_replan = port is None
        self._binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="smppgw-redis-"))
        self._child = Child("redis-server", self._argv(), self.dir / "redis.log")

    def _argv(self) -> list[str]:
        return [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _replan(self) -> int:
        """A new free port, in the server's argv (a first start lost its port)."""
        self.port = free_port(self.host)
        self._child.argv = self._argv()
        return self.port

    def stop(self, timeout: float = 10.0) -> None:
        self._child.stop(timeout)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
