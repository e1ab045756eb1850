"""Starting a local mosquitto: the one place that knows which broker settings matter.

The demo, the benchmark and the tests each run their own broker on a free loopback port.
They share the binary lookup, the port choice and, above all, the settings without which
mosquitto loses or delays messages under load:

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
import time
from pathlib import Path

INSTALL_HINT = "apt-get install mosquitto"


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


def config_lines(
    host: str,
    port: int,
    *,
    persistence_dir: Path | None = None,
    autosave_interval: int = 1,
    max_inflight_messages: int = 1000,
    allow_anonymous: bool = True,
) -> list[str]:
    """The listener and the loss-free, low-latency settings (logging is the caller's)."""
    lines = [
        f"listener {port} {host}",
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
