"""sd_notify(3) without libsystemd: tell systemd we are ready, reloading, stopping, alive.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named in
``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace). Outside systemd the
variable is unset and every call is a cheap no-op, so the gateway calls these
unconditionally. Sending never raises: a lost notification must not take the gateway down.

With ``WatchdogSec=`` systemd kills and restarts us unless ``WATCHDOG=1`` arrives within
the interval. :func:`run_watchdog` pings from the event loop itself, and only while the
caller's health check passes, so a blocked loop or a wedged gateway is restarted rather
than kept alive by a thread that pings regardless.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable

#: A full systemd receive queue must not stall the event loop for long.
_SEND_TIMEOUT = 0.5


def notify(*lines: str) -> bool:
    """Send ``lines`` as one notification; True if a socket was configured and took it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not lines:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(_SEND_TIMEOUT)
            sock.connect(address)
            sock.sendall("\n".join(lines).encode())
    except OSError:
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Start-up (or a reload) is complete; systemd's start job finishes here."""
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def reloading() -> bool:
    """A SIGHUP reload started; send :func:`ready` when it is done.

    MONOTONIC_USEC is what ``Type=notify-reload`` (systemd 253+) requires to tell this
    reload from an earlier one; older systemd ignores it.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}")


def stopping(status: str | None = None) -> bool:
    """Shutdown (drain) started."""
    return notify("STOPPING=1", *([f"STATUS={status}"] if status else []))


def status(text: str) -> bool:
    """One line shown by ``systemctl status`` (e.g. "3 carriers, 6 binds up, queue 120")."""
    return notify(f"STATUS={text.splitlines()[0] if text else ''}")


def watchdog() -> bool:
    """Keep-alive ping: the service is healthy right now."""
    return notify("WATCHDOG=1")


def extend_timeout(seconds: float) -> bool:
    """Ask for more time in the current start/stop job (a long drain, a slow store check)."""
    return notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")


def watchdog_interval() -> float | None:
    """Seconds within which systemd expects a ping, or None when no watchdog is set for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None  # meant for another process (we were started by a wrapper)
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None


async def run_watchdog(is_healthy: Callable[[], bool], interval: float | None = None) -> None:
    """Ping at half the watchdog interval while ``is_healthy()``; returns if none is set.

    Run it as a task from the gateway and cancel it on shutdown. ``interval`` overrides
    ``WATCHDOG_USEC`` (for tests).
    """
    period = interval if interval is not None else watchdog_interval()
    if period is None:
        return
    while True:
        if is_healthy():
            watchdog()
        await asyncio.sleep(period / 2)
