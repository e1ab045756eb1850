"""sd_notify against a real AF_UNIX datagram socket standing in for systemd's."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator

import pytest

from smppgw.ops import notify


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET, as PID 1 holds it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, timeout: float = 2.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def drain(self) -> list[str]:
        got = []
        self.sock.setblocking(False)
        try:
            while True:
                got.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return got


@pytest.fixture
def systemd(tmp_path, monkeypatch) -> Iterator[FakeSystemd]:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        yield FakeSystemd(sock)


def test_without_notify_socket_every_call_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.ready() is False
    assert notify.watchdog() is False
    assert notify.stopping() is False


def test_ready_with_status(systemd):
    assert notify.ready("3 carriers, 6 binds up")
    assert systemd.recv() == "READY=1\nSTATUS=3 carriers, 6 binds up"
    assert notify.ready()
    assert systemd.recv() == "READY=1"


def test_reloading_carries_a_current_monotonic_timestamp(systemd):
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notify.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = systemd.recv().split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_stopping_status_watchdog_and_extend_timeout(systemd):
    notify.stopping("draining 12 in-flight submits")
    assert systemd.recv() == "STOPPING=1\nSTATUS=draining 12 in-flight submits"
    notify.status("queue 120\nsecond line would break the protocol")
    assert systemd.recv() == "STATUS=queue 120"
    notify.watchdog()
    assert systemd.recv() == "WATCHDOG=1"
    notify.extend_timeout(12.5)
    assert systemd.recv() == "EXTEND_TIMEOUT_USEC=12500000"


def test_abstract_socket_names(monkeypatch):
    name = f"smppgw-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify.ready()
        sock.settimeout(2)
        assert sock.recv(4096) == b"READY=1"


def test_a_dead_socket_is_reported_not_raised(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert notify.ready() is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        (None, None, None),
        ("30000000", None, 30.0),
        ("30000000", "self", 30.0),
        ("30000000", "1", None),  # for another process
        ("0", None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval(monkeypatch, usec, pid, expected):
    for key, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, str(os.getpid()) if value == "self" else value)
    assert notify.watchdog_interval() == expected


async def test_run_watchdog_returns_at_once_without_a_watchdog(monkeypatch):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    await asyncio.wait_for(notify.run_watchdog(lambda: True), timeout=1)


async def test_run_watchdog_pings_at_half_the_interval_only_while_healthy(systemd, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 0.2 s → a ping every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    healthy = True
    task = asyncio.create_task(notify.run_watchdog(lambda: healthy))
    try:
        await asyncio.sleep(0.55)
        pings = systemd.drain()
        assert set(pings) == {"WATCHDOG=1"}
        assert 4 <= len(pings) <= 7
        healthy = False
        await asyncio.sleep(0.12)  # let a tick that started while healthy finish
        systemd.drain()
        await asyncio.sleep(0.5)
        assert systemd.drain() == []  # unhealthy: silence, so systemd restarts us
        healthy = True
        await asyncio.sleep(0.25)
        assert len(systemd.drain()) >= 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
