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
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from smppgw.mqtt.broker import config_lines, find_mosquitto, free_port, reachable

INSTALL_HINT = "install it (apt-get install mosquitto) or pass --broker HOST:PORT"


class BrokerError(RuntimeError):
    """No broker can be used; the message says what to do."""


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
        lines = config_lines(self.host, self.port)
        lines += ["log_dest stderr", "log_type error", "log_type warning"]
        config.write_text("\n".join(lines) + "\n")
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
