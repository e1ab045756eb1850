"""The bounded HTTP server behind /metrics, /healthz and /readyz, over real loopback TCP,
with short limits so the deadlines show in well under a second."""

from __future__ import annotations

import errno
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from smppgw.ops.health import HealthState
from smppgw.ops.http import HttpEndpoint, HttpLimits
from smppgw.ops.metrics import Metrics

LIMITS = HttpLimits(max_connections=3, workers=2, timeout=0.5, max_head=1024)


@pytest.fixture
def served() -> Iterator[tuple[Metrics, int]]:
    metrics = Metrics(process_metrics=False)
    endpoint = HttpEndpoint(metrics, HealthState(), LIMITS)
    _host, port = endpoint.start("127.0.0.1:0")
    try:
        yield metrics, port
    finally:
        endpoint.stop()


def dropped(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "smppgw_http_connections_dropped_total", {"reason": reason}
    )
    return value or 0.0


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Did the server close ``sock`` (EOF or reset) within ``seconds``?"""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


def scrape(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        return response.status


def test_a_client_trickling_its_request_is_cut_at_the_deadline(served) -> None:
    metrics, port = served
    sock = socket.create_connection(("127.0.0.1", port))
    started = time.monotonic()
    stop = threading.Event()

    def trickle() -> None:
        for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n":
            if stop.wait(0.05):
                return
            try:
                sock.send(bytes((byte,)))
            except OSError:
                return

    writer = threading.Thread(target=trickle)
    writer.start()
    try:
        assert closed_within(sock, 3.0)
    finally:
        stop.set()
        writer.join()
        sock.close()
    elapsed = time.monotonic() - started
    assert LIMITS.timeout - 0.05 <= elapsed < LIMITS.timeout + 0.5, elapsed
    assert dropped(metrics, "timeout") == 1
    assert scrape(port) == 200


def test_a_request_head_too_big_gets_431_and_is_closed(served) -> None:
    metrics, port = served
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Junk: " + b"a" * 2000)
        sock.settimeout(2)
        answer = sock.recv(100)
    assert answer.startswith(b"HTTP/1.0 431 ")
    assert dropped(metrics, "malformed") == 1


def test_idle_connections_over_the_cap_make_room_for_a_real_request(served) -> None:
    metrics, port = served
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
    try:
        time.sleep(0.1)
        assert scrape(port) == 200  # the oldest idle connection gave its place
        # 10 idle + 1 scrape into 3 places: 8 idle were pushed out at once.
        assert dropped(metrics, "over_cap") == 8
        assert sum(closed_within(s, 0.05) for s in idle) == 8
    finally:
        for s in idle:
            s.close()


def test_stop_is_prompt_with_connections_open() -> None:
    endpoint = HttpEndpoint(Metrics(process_metrics=False), HealthState(), LIMITS)
    _host, port = endpoint.start("127.0.0.1:0")
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    started = time.monotonic()
    endpoint.stop()
    assert time.monotonic() - started < 1.0
    assert all(closed_within(s, 1.0) for s in idle)
    for s in idle:
        s.close()


def test_a_port_in_use_is_an_address_in_use_error() -> None:
    """The bind fails inside the base class's constructor, which closes the server: that
    must raise the OSError that says why (it was an AttributeError from server_close, so
    an operator, and smppgw.procs.port_taken, never saw "address already in use")."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        endpoint = HttpEndpoint(Metrics(process_metrics=False), HealthState(), LIMITS)
        with pytest.raises(OSError) as raised:
            endpoint.start(f"127.0.0.1:{port}")
        assert raised.value.errno == errno.EADDRINUSE
