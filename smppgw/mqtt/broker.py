"""A local mosquitto (:class:`Mosquitto`): the one place that knows which settings matter.

The demo, the benchmark and the tests each run their own broker on a free loopback port,
all with this class, and so with the settings without which mosquitto loses or delays
messages under load:

* ``max_queued_messages 0``: the default (1000) silently drops QoS 1 messages queued for a
  client that is slow or away (a gateway restarting, a benchmark outrunning the gateway);
* a generous ``max_inflight_messages`` (default 20 caps publish throughput);
* ``set_tcp_nodelay true``: with Nagle's algorithm a small PUBLISH waits for the previous
  segment's ACK, which the receiver delays by up to 40 ms (measured: 10-40 ms every hop).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from smppgw.procs import Child, ChildError, PlannedServer

INSTALL_HINT = "apt-get install mosquitto"
#: What a broker started for a run logs, to its log file: enough to say why it failed.
QUIET = ("error", "warning")


class BrokerError(ChildError):
    """No broker can be started or it died; the message says what to do."""


def find_mosquitto() -> str | None:
    """The mosquitto binary, or None: Debian puts it in /usr/sbin, outside a user's PATH."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out, so concurrent runs do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def listener_line(host: str, port: int) -> str:
    return f"listener {port} {host}"


def config_lines(
    host: str,
    port: int,
    *,
    persistence_dir: Path | None = None,
    autosave_interval: int = 1,
    max_inflight_messages: int = 1000,
    allow_anonymous: bool = True,
) -> list[str]:
    """The listener (first) and the loss-free, low-latency settings (logging is the
    caller's)."""
    lines = [
        listener_line(host, port),
        f"allow_anonymous {'true' if allow_anonymous else 'false'}",
        "max_queued_messages 0",
        "max_queued_bytes 0",
        f"max_inflight_messages {max_inflight_messages}",
        "set_tcp_nodelay true",
    ]
    if persistence_dir is None:
        lines.append("persistence false")
    else:
        lines += [
            "persistence true",
            f"persistence_location {persistence_dir}/",
            "persistence_file mosquitto.db",
            f"autosave_interval {autosave_interval}",
        ]
    if os.geteuid() == 0:
        # As root mosquitto switches to user "mosquitto", who cannot write a tmp dir.
        lines.append("user root")
    return lines


class Mosquitto(PlannedServer):
    """One mosquitto on a free loopback port, with its config, log and (optionally)
    persistence file in a directory (a temporary one, removed by ``close()``, if none is
    given). ``start()`` after ``stop()`` or ``kill()`` reuses the port and, with
    ``persistence``, the sessions and queued messages, as a production restart would.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        directory: str | os.PathLike[str] | None = None,
        persistence: bool = True,
        max_inflight_messages: int = 1000,
        autosave_interval: int = 1,
        log_types: Sequence[str] = QUIET,
        extra_lines: Sequence[str] = (),
        allow_anonymous: bool = True,
        own_session: bool = False,
    ) -> None:
        """``own_session``: Ctrl-C in the terminal does not reach the broker (the demo
        stops it last, after the gateway drained); ``extra_lines``: more config lines."""
        binary = find_mosquitto()
        if binary is None:
            raise BrokerError(f"mosquitto is not installed ({INSTALL_HINT})")
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._may_replan = port is None
        self._owns_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="smppgw-mosquitto-"))
        self.config_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self.max_inflight_messages = max_inflight_messages
        #: The config after the listener line (which :meth:`_write_config` puts first).
        self._lines = [
            *config_lines(
                host,
                self.port,
                persistence_dir=self.dir if persistence else None,
                autosave_interval=autosave_interval,
                max_inflight_messages=max_inflight_messages,
                allow_anonymous=allow_anonymous,
            )[1:],
            "log_dest stderr",
            *(f"log_type {kind}" for kind in log_types),
            *extra_lines,
        ]
        self._write_config()
        self._child = Child(
            "mosquitto",
            [binary, "-c", str(self.config_path)],
            self.log_path,
            own_session=own_session,
        )

    def _write_config(self) -> None:
        lines = [listener_line(self.host, self.port), *self._lines]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float | None = None) -> Self:
        """Start (or restart) on its port (:meth:`PlannedServer.start`); BrokerError, with
        the end of the log, when it does not listen."""
        try:
            return super().start(timeout)
        except ChildError as exc:
            raise BrokerError(str(exc)) from None

    def _replan(self) -> int:
        """A new free port, in the config file (a first start lost its port)."""
        self.port = free_port(self.host)
        self._write_config()
        return self.port

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: mosquitto saves its persistence file on the way out."""
        self._child.stop(timeout)

    def close(self) -> None:
        """Stop and remove the directory if it was made for this broker."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
