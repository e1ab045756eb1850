"""Shared fixtures: a real mosquitto, PostgreSQL and redis-server on free loopback ports
(never a mock broker, database or cache)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from support.broker import Mosquitto, find_mosquitto
from support.servers import Postgres, Redis, find_postgres_bin, find_redis

# CI machines are small and shared: a slow example is not a failure. Timing is measured in
# benchmarks, never asserted by hypothesis.
settings.register_profile(
    "smppgw", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("smppgw")

_NO_MOSQUITTO = "mosquitto is not installed (apt-get install mosquitto, or put it on PATH)"


def _require_mosquitto() -> None:
    if find_mosquitto() is None:
        pytest.skip(_NO_MOSQUITTO)


@pytest.fixture
def make_mosquitto(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Factory for brokers with non-default settings (``Mosquitto`` keyword arguments);
    every broker it started is stopped at the end of the test."""
    _require_mosquitto()
    brokers: list[Mosquitto] = []

    def make(**kwargs: Any) -> Mosquitto:
        directory = tmp_path / f"mosquitto-{len(brokers)}"
        directory.mkdir()
        broker = Mosquitto(directory=directory, **kwargs)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.close()


@pytest.fixture
def mosquitto(make_mosquitto: Callable[..., Mosquitto]) -> Mosquitto:
    """A fresh broker for this test: ``.host``, ``.port``, ``.stop()``, ``.start()``,
    ``.kill()``; persistence on, so a restart keeps sessions and queued QoS 1 messages."""
    return make_mosquitto()


@pytest.fixture(scope="session")
def mosquitto_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One broker for the whole run, for tests that neither stop it nor depend on its
    state: use unique client ids and topics."""
    _require_mosquitto()
    broker = Mosquitto(directory=tmp_path_factory.mktemp("mosquitto-shared"))
    broker.start()
    yield broker
    broker.close()


# -- PostgreSQL and Redis (the cluster backends) ------------------------------------------
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """One PostgreSQL for the whole run (initdb in a temporary directory, a free loopback
    port); tests get their own database from ``postgres_dsn``. Skipped only where the
    binaries are missing: .ci/run installs them, so CI never skips."""
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = Postgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_dsn(postgres_server: Postgres) -> Iterator[str]:
    """A fresh, empty database on the shared server, dropped after the test."""
    dsn = postgres_server.create_database()
    yield dsn
    postgres_server.drop_database(dsn)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    """One redis-server for the whole run on a free loopback port; tests use unique keys
    (or ``redis_url``, which flushes the database first)."""
    if find_redis() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = Redis()
    try:
        server.start()
        yield server
    finally:
        server.close()
