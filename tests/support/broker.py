"""A real mosquitto broker for tests, started on a free loopback port.

Why a real broker: the properties the gateway relies on (PUBACK timing, redelivery of
unacknowledged QoS 1 messages after a reconnect, persistent sessions surviving a broker
restart, Receive Maximum) are broker behaviour; a mock would only echo our assumptions.

The generated config avoids mosquitto's lossy defaults (``max_queued_messages 1000`` drops
QoS 1 messages for slow or offline clients) and turns persistence on, so ``stop()`` then
``start()`` keeps sessions and queued messages, as a production restart would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from smppgw.mosquitto import config_lines, find_mosquitto, free_port

__all__ = ["Mosquitto", "MosquittoNotFound", "find_mosquitto", "free_port"]


class MosquittoNotFound(RuntimeError):
    """No mosquitto binary on PATH or at /usr/sbin/mosquitto."""


class Mosquitto:
    """One mosquitto process with its own config, persistence file and log in a tmp dir.

    ``start()`` after ``stop()`` or ``kill()`` reuses the port and the persistence file.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        directory: str | os.PathLike[str] | None = None,
        max_inflight_messages: int = 1000,
        autosave_interval: int = 1,
        extra_config: str = "",
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
    ) -> None:
        """``users`` (name → password) turns authentication on: a password file made with
        ``mosquitto_passwd -b`` and ``allow_anonymous false``; ``acl`` is the text of an
        ``acl_file`` (e.g. conf/mosquitto.acl)."""
        binary = find_mosquitto()
        if binary is None:
            raise MosquittoNotFound("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._owns_dir = directory is None
        self.dir = (
            Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="mosq-"))
        )
        self.config_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self.max_inflight_messages = max_inflight_messages
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_config(autosave_interval, extra_config, users, acl)

    def _write_config(
        self,
        autosave_interval: int,
        extra_config: str,
        users: Mapping[str, str] | None,
        acl: str | None,
    ) -> None:
        lines = config_lines(
            self.host,
            self.port,
            persistence_dir=self.dir,
            autosave_interval=autosave_interval,
            max_inflight_messages=self.max_inflight_messages,
            allow_anonymous=users is None,
        )
        if users is not None:
            lines.append(f"password_file {self._password_file(users)}")
        if acl is not None:
            acl_path = self.dir / "mosquitto.acl"
            acl_path.write_text(acl)
            lines.append(f"acl_file {acl_path}")
        lines += [
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
        ]
        if extra_config:
            lines.append(extra_config)
        self.config_path.write_text("\n".join(lines) + "\n")

    def _password_file(self, users: Mapping[str, str]) -> Path:
        tool = shutil.which("mosquitto_passwd")
        if tool is None:
            raise MosquittoNotFound("mosquitto_passwd is not installed (apt-get install mosquitto)")
        path = self.dir / "passwd"
        path.touch(mode=0o600)
        for name, password in users.items():
            subprocess.run([tool, "-b", str(path), name, password], check=True, capture_output=True)
        return path

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart) on the same port; return once the port accepts connections."""
        if self.running:
            return
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        try:
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self._proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port}:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: mosquitto saves its persistence file on the way out."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: whatever was not autosaved is lost, like a power cut."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10.0)
        self._proc = None

    def close(self) -> None:
        """Stop and remove the tmp dir if we created it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Mosquitto({self.host}:{self.port}, running={self.running})"
