"""The demo's MQTT broker: a mosquitto already listening, or one started for the run.

A user who runs ``smppgw demo`` usually has mosquitto installed as a service on port 1883;
using it lets them watch the run with ``mosquitto_sub``. Without one, the demo starts its own
on a free port with a generated config, so nothing about the machine has to be set up first.
The generated config avoids mosquitto's lossy default (``max_queued_messages 1000`` drops
QoS 1 messages for a slow client) and keeps no state: persistence off, a temp dir removed
at the end.
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
from pathlib import Path

INSTALL_HINT = "install it (apt-get install mosquitto) or pass --broker HOST:PORT"


class BrokerError(RuntimeError):
    """No broker can be used; the message says what to do."""


def find_mosquitto() -> str | None:
    """The mosquitto binary: Debian puts it in /usr/sbin, outside a normal user's PATH."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class OwnBroker:
    """A mosquitto started for this run on a free loopback port; ``stop()`` removes it all."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        binary = find_mosquitto()
        if binary is None:
            raise BrokerError(f"mosquitto is not installed: {INSTALL_HINT}")
        self.binary = binary
        self.host = host
        self.port = free_port(host)
        self.dir = Path(tempfile.mkdtemp(prefix="smppgw-demo-mosquitto-"))
        self.log_path = self.dir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        config = self.dir / "mosquitto.conf"
        config.write_text(
            "\n".join(
                [
                    f"listener {self.port} {self.host}",
                    "allow_anonymous true",
                    "max_queued_messages 0",  # 0 = unlimited: never drop a queued QoS 1 message
                    "max_inflight_messages 1000",
                    "persistence false",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                ]
            )
            + "\n"
        )
        with open(self.log_path, "wb") as log:
            # Own session: Ctrl-C in the terminal must not kill the broker before the gateway
            # has drained; the demo stops it last.
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self._proc.returncode}: {self.log()}")
            if reachable(self.host, self.port, 0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port}: {self.log()}")

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace").strip()[-2000:]
        return ""

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        shutil.rmtree(self.dir, ignore_errors=True)
