"""A port planned free and taken before the child bound it: every starter that plans ports
(mosquitto, PostgreSQL, redis-server, the gateway of the fault-injection stack and of the
benchmark, bearerbox) plans new ones and starts again, through :func:`smppgw.procs.fresh_ports`
(:func:`smppgw.procs.start_planned` for a child that is ready once it listens).

Each test holds a port with a listening socket (the "squatter") and makes the first
planned port that one, which is what another process taking it looks like to the child:
it exits with "address already in use".
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import smppgw.bench.procs as bench_procs
import smppgw.cluster.servers as cluster_servers
import smppgw.mqtt.broker as mqtt_broker
from smppgw.bench.scenarios import carrier
from smppgw.procs import (
    PORT_ATTEMPTS,
    Child,
    ChildError,
    fresh_ports,
    listens,
    port_taken,
    start_planned,
)

import reliability.stack as reliability_stack
from reliability.stack import GatewayProc, SimProc, carrier_entry
from support.broker import Mosquitto, find_mosquitto
from support.servers import Postgres, Redis, find_postgres_bin, find_redis


@pytest.fixture
def squatter() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def taken_first(monkeypatch: pytest.MonkeyPatch, module: object, port: int) -> list[int]:
    """``module.free_port`` hands out ``port`` first, then real free ports; returns the
    list of every port it handed out."""
    real = mqtt_broker.free_port
    handed: list[int] = []

    def free_port(host: str = "127.0.0.1") -> int:
        handed.append(port if not handed else real(host))
        return handed[-1]

    monkeypatch.setattr(module, "free_port", free_port)
    return handed


def _lost() -> ChildError:
    return ChildError("x exited with code 1:\nError: Address already in use")


def test_fresh_ports_retries_only_a_lost_port_and_not_after_the_last_attempt() -> None:
    tries: list[int] = []

    def start(fail: Callable[[int], ChildError | None]) -> int:
        for attempt in fresh_ports():
            with attempt:
                tries.append(attempt.number)
                error = fail(attempt.number)
                if error is not None:
                    raise error
                return attempt.number
        raise AssertionError("unreachable")

    assert start(lambda n: _lost() if n == 1 else None) == 2
    assert tries == [1, 2]
    tries.clear()
    with pytest.raises(ChildError, match="code 3"):
        start(lambda n: ChildError("x exited with code 3: bad config"))
    assert tries == [1]  # another failure: at once
    tries.clear()
    with pytest.raises(ChildError, match="already in use"):
        start(lambda n: _lost())
    assert tries == list(range(1, PORT_ATTEMPTS + 1))
    assert port_taken(OSError(98, "[Errno 98] error while attempting to bind"))


#: A child that listens on the port in its argv, or exits as told ("exit N: why").
_LISTENER = """
import socket, sys, time
if sys.argv[1].startswith("exit"):
    print(sys.argv[1], flush=True)
    sys.exit(int(sys.argv[1].split()[1].rstrip(":")))
if sys.argv[1] != "mute":
    sock = socket.socket()
    sock.bind(("127.0.0.1", int(sys.argv[1])))
    sock.listen()
time.sleep(60)
"""


class Planned:
    """A :class:`Child` running ``_LISTENER`` and the ``replan`` that moves it to a new
    port (``following``: what it is started with after a replan)."""

    def __init__(self, tmp_path: Path, first: str, following: str | None = None) -> None:
        self.child = Child("listener", [sys.executable, "-c", _LISTENER, first], tmp_path / "log")
        self.following = following
        self.replans: list[int] = []

    def replan(self) -> int:
        port = mqtt_broker.free_port()
        self.replans.append(port)
        self.child.argv[-1] = self.following or str(port)
        return port

    def starts(self) -> int:
        """How many times it was started (each start that failed wrote one line or one
        traceback)."""
        return self.child.log_text().count("Traceback") + self.child.log_text().count("exit ")


def test_start_planned_starts_again_on_a_fresh_port_when_the_planned_one_was_taken(
    tmp_path: Path, squatter: int
) -> None:
    planned = Planned(tmp_path, str(squatter))
    try:
        port = start_planned(
            planned.child, "127.0.0.1", squatter, replan=planned.replan, timeout=10
        )
        assert planned.replans == [port] and port != squatter
        assert planned.child.running and listens(planned.child.pid, port) is not False
        assert "Address already in use" in planned.child.log_text()
    finally:
        planned.child.stop()


def test_start_planned_fails_at_once_and_precisely_for_any_other_failure(
    tmp_path: Path, squatter: int
) -> None:
    planned = Planned(tmp_path, "exit 3: bad config")
    with pytest.raises(ChildError, match=r"(?s)exited with code 3.*exit 3: bad config"):
        start_planned(planned.child, "127.0.0.1", squatter, replan=planned.replan, timeout=10)
    assert planned.replans == [] and planned.starts() == 1
    # A lost port, then another failure: that failure, after one replan.
    planned = Planned(tmp_path / "second", str(squatter), following="exit 4: broken")
    (tmp_path / "second").mkdir()
    with pytest.raises(ChildError, match="code 4"):
        start_planned(planned.child, "127.0.0.1", squatter, replan=planned.replan, timeout=10)
    assert len(planned.replans) == 1


def test_start_planned_does_not_replan_when_told_not_to_and_stops_what_never_listened(
    tmp_path: Path, squatter: int
) -> None:
    planned = Planned(tmp_path, str(squatter))
    with pytest.raises(ChildError, match="already in use"):
        start_planned(
            planned.child,
            "127.0.0.1",
            squatter,
            replan=planned.replan,
            timeout=10,
            may_replan=False,
        )
    assert planned.replans == []
    mute = Planned(tmp_path, "mute")
    with pytest.raises(ChildError, match="nothing listens"):
        start_planned(mute.child, "127.0.0.1", squatter, replan=mute.replan, timeout=0.5)
    assert not mute.child.running and mute.replans == []


def test_start_planned_gives_up_after_the_last_attempt(tmp_path: Path, squatter: int) -> None:
    planned = Planned(tmp_path, str(squatter), following=str(squatter))  # lost every time
    with pytest.raises(ChildError, match="already in use"):
        start_planned(planned.child, "127.0.0.1", squatter, replan=planned.replan, timeout=10)
    assert len(planned.replans) == PORT_ATTEMPTS - 1 and planned.starts() == PORT_ATTEMPTS
    assert not planned.child.running


def test_mosquitto_plans_a_new_port_when_its_first_was_taken(
    tmp_path: Path, squatter: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    handed = taken_first(monkeypatch, mqtt_broker, squatter)
    broker = Mosquitto(directory=tmp_path).start()
    try:
        assert handed[0] == squatter and broker.port == handed[-1] != squatter
        assert broker.running
        assert "Address already in use" in broker.log_tail(200)
        broker.stop()
        broker.start()  # a restart keeps the port clients know
        assert broker.port == handed[-1] and len(handed) == 2
    finally:
        broker.close()


def test_a_port_given_is_not_replanned(tmp_path: Path, squatter: int) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broker = Mosquitto(directory=tmp_path, port=squatter)
    try:
        with pytest.raises(ChildError, match="already in use"):
            broker.start()
        assert broker.port == squatter
    finally:
        broker.close()


def test_redis_and_postgres_plan_a_new_port_when_their_first_was_taken(
    squatter: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if find_redis() is None or find_postgres_bin() is None:
        pytest.skip("redis-server or PostgreSQL is not installed")
    for server_class in (Redis, Postgres):
        handed = taken_first(monkeypatch, cluster_servers, squatter)
        server = server_class().start()
        try:
            assert handed[0] == squatter and server.port == handed[-1] != squatter
            assert server.running
        finally:
            server.close()


async def test_the_reliability_gateway_plans_a_new_metrics_port(
    tmp_path: Path, squatter: int, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed = taken_first(monkeypatch, reliability_stack, squatter)
    sim = SimProc(tmp_path / "sim").start()
    gw = GatewayProc(tmp_path / "gw", mosquitto, [carrier_entry(sim)])
    try:
        await gw.start()
        assert handed[0] == squatter and gw.metrics_port == handed[-1] != squatter
        assert gw.starts == 1
        assert gw.metric("smppgw_jobs_received_total") == 0
    finally:
        gw.close()
        sim.stop()


def test_the_bench_gateway_plans_a_new_metrics_port(
    tmp_path: Path, squatter: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broker = bench_procs.Broker(tmp_path)
    handed = taken_first(monkeypatch, bench_procs, squatter)
    try:
        down = carrier(mqtt_broker.free_port(), tps=10)  # nobody listens: the carrier is down
        gateway = bench_procs.start_gateway(tmp_path, broker, [down])
        try:
            assert handed[0] == squatter and gateway.metrics_port == handed[-1] != squatter
            assert gateway.running
            assert "smppgw_jobs_received_total" in "".join(gateway.metrics())
        finally:
            gateway.stop()
    finally:
        broker.close()
