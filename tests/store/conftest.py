"""One store contract, two backends: every contract test runs on SQLite (with its writer
in a child process, as a thread, and both following the load: ``store.writer``) and on a
real PostgreSQL (``backend`` is parametrized; the PostgreSQL one skips only where PostgreSQL is not
installed, and CI installs it).

``Backend.open()`` opens the same database each time it is called in a test, so "reopen"
(a restart of the same gateway) means the same thing on both; ``sql()`` runs a raw query
for the few tests that look under the contract (purge ages, row counts).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import pytest

from smppgw.store import Store
from smppgw.store.pg import PostgresStore

NODE = "gw-test"


class Backend(Protocol):
    name: str

    def open(self, **kwargs: Any) -> Any: ...

    async def sql(self, store: Any, query: str) -> list[tuple[Any, ...]]: ...


def fetch_all(conn: sqlite3.Connection, query: str) -> list[tuple[Any, ...]]:
    """Module-level, so it pickles to a writer process."""
    return [tuple(row) for row in conn.execute(query).fetchall()]


class SqliteBackend:
    def __init__(self, path: Path, writer: str) -> None:
        self.path = str(path)
        self.writer = writer
        self.name = "sqlite" if writer == "process" else f"sqlite-{writer}"

    def open(self, **kwargs: Any) -> Store:
        kwargs.setdefault("writer", self.writer)
        return Store(self.path, **kwargs)

    async def sql(self, store: Any, query: str) -> list[tuple[Any, ...]]:
        rows = await store.run(partial(fetch_all, query=query))
        return [tuple(row) for row in rows]


class PostgresBackend:
    name = "postgres"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def open(self, **kwargs: Any) -> PostgresStore:
        kwargs.pop("busy_timeout", None)
        kwargs.setdefault("node", NODE)
        return PostgresStore(self.dsn, **kwargs)

    async def sql(self, store: Any, query: str) -> list[tuple[Any, ...]]:
        rows = await store.run(lambda c: c.fetch(query))
        return [tuple(row) for row in rows]


@pytest.fixture(params=["sqlite", "sqlite-thread", "sqlite-auto", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param.startswith("sqlite"):
        writer = request.param.removeprefix("sqlite-") if "-" in request.param else "process"
        yield SqliteBackend(tmp_path / "gw.db", writer)
        return
    server = request.getfixturevalue("postgres_server")
    dsn = server.create_database()
    yield PostgresBackend(dsn)
    server.drop_database(dsn)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Any]:
    async with backend.open() as opened:
        yield opened
