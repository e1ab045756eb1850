"""``smppgw routes --config FILE lookup NUMBER | list | import FILE.csv | forget NUMBER``.

The ported-number cache (README, "Failover and ported numbers"), read and changed in the
store of a gateway that may be running, whichever backend ``store.backend`` names:

* SQLite: WAL lets this second connection read while the gateway writes, and a change
  commits in one short transaction (the gateway waits up to its busy timeout for it). The
  gateway's intake reads the table on every job, so a change applies to the next job.
* PostgreSQL: a connection of its own to the shared database (no lease: this command is
  no gateway); every gateway of the cluster looks the table up for every job, so a change
  applies to the next job any of them takes. Nothing needs a reload.

``import`` reads the operator's CSV (``number,carrier`` lines, README), refuses the whole
file when any line is wrong (saying which), and otherwise sets every number in one
transaction (on PostgreSQL one statement), then says what it changed.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from smppgw.config import Config, ConfigError, StoreBackend
from smppgw.config.loader import load_config
from smppgw.pipeline.failover import plan_chain
from smppgw.pipeline.ported import read_ported_file, shown
from smppgw.pipeline.routing import Router, RoutingError, normalize_msisdn
from smppgw.store import StoreError
from smppgw.store import routes as ported
from smppgw.store.factory import describe
from smppgw.store.schema import connect
from smppgw.store.writer import Tx

T = TypeVar("T")


class PortedTable(Protocol):
    """The ported table of one backend, for this command (each call its own
    transaction; ``now`` the command's clock)."""

    now: float

    async def get(self, number: str) -> ported.Ported | None: ...
    async def live(self, number: str) -> str | None: ...
    async def listing(self, limit: int) -> list[ported.Ported]: ...
    async def put(self, entries: Sequence[tuple[str, str]]) -> ported.ImportReport: ...
    async def forget(self, number: str) -> ported.Ported | None: ...
    async def close(self) -> None: ...


class SqliteTable:
    """The SQLite store's file, on a connection of this command's own."""

    def __init__(self, path: str) -> None:
        if not Path(path).exists():
            raise StoreError(f"no store at {path}")
        try:
            self._conn = connect(path, busy_timeout=10.0, synchronous="NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
        self.now = time.time()

    def _tx(self) -> Tx:
        return Tx(self._conn, self.now)

    async def get(self, number: str) -> ported.Ported | None:
        return ported.get(self._tx(), number)

    async def live(self, number: str) -> str | None:
        return ported.ported_carrier(self._conn, number, self.now)

    async def listing(self, limit: int) -> list[ported.Ported]:
        return ported.list_ported(self._tx(), limit)

    def _write(self, fn: Callable[[Tx], T]) -> T:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(self._tx())
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return result

    async def put(self, entries: Sequence[tuple[str, str]]) -> ported.ImportReport:
        return self._write(
            lambda tx: ported.import_ported(tx, entries, ported.IMPORTED, replace_source=False)
        )

    async def forget(self, number: str) -> ported.Ported | None:
        return self._write(lambda tx: ported.forget(tx, number))

    async def close(self) -> None:
        self._conn.close()


class PostgresTable:
    """The cluster's shared store, on a connection of this command's own; a database
    error is a ``StoreError`` (its message never holds the DSN)."""

    def __init__(self, conn: Any) -> None:
        import asyncpg

        from smppgw.store.pg import routes as pg
        from smppgw.store.pg.writer import PgTx

        self._conn = conn
        self._pg = pg
        self._errors = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
        self.now = time.time()
        self._tx = PgTx(conn, self.now, "routes")

    @classmethod
    async def connect(cls, dsn: str) -> PostgresTable:
        import asyncpg

        try:
            conn = await asyncpg.connect(dsn, timeout=5)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from exc
        return cls(conn)

    async def _call(
        self, fn: Callable[..., Awaitable[T]], *args: Any, write: bool = False, **kwargs: Any
    ) -> T:
        try:
            if not write:
                return await fn(self._tx, *args, **kwargs)
            async with self._conn.transaction():
                return await fn(self._tx, *args, **kwargs)
        except self._errors as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    async def get(self, number: str) -> ported.Ported | None:
        return await self._call(self._pg.get, number)

    async def live(self, number: str) -> str | None:
        return await self._call(self._pg.ported_carrier, number)

    async def listing(self, limit: int) -> list[ported.Ported]:
        return await self._call(self._pg.list_ported, limit)

    async def put(self, entries: Sequence[tuple[str, str]]) -> ported.ImportReport:
        return await self._call(
            self._pg.import_ported, entries, ported.IMPORTED, replace_source=False, write=True
        )

    async def forget(self, number: str) -> ported.Ported | None:
        return await self._call(self._pg.forget, number, write=True)

    async def close(self) -> None:
        await self._conn.close()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="the gateway's config")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lookup = sub.add_parser("lookup", help="where a job to NUMBER goes, and why")
    lookup.add_argument("number")
    listing = sub.add_parser("list", help="the ported numbers, by number")
    listing.add_argument("--limit", type=int, default=1000, metavar="N")
    imported = sub.add_parser("import", help="set numbers from a number,carrier CSV file")
    imported.add_argument("file", metavar="FILE.csv")
    forget = sub.add_parser("forget", help="drop NUMBER's mapping (back to prefix routing)")
    forget.add_argument("number")


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _describe(entry: ported.Ported, now: float) -> str:
    expiry = "no expiry" if entry.expires_at is None else f"until {_when(entry.expires_at)}"
    if entry.expires_at is not None and entry.expires_at <= now:
        expiry = f"expired {_when(entry.expires_at)}"
    return f"{entry.number}  {entry.carrier}  ({entry.source} {_when(entry.changed_at)}, {expiry})"


def _number(raw: str, config: Config) -> str:
    return normalize_msisdn(raw, config.routing.country_code)


async def _lookup(table: PortedTable, config: Config, raw: str) -> int:
    number = _number(raw, config)
    configs = {c.name: c for c in config.carriers}
    router = Router(config.carriers, config.routing)
    entry = await table.get(number)
    live = await table.live(number)
    try:
        home = router.route(number)
        first, chain = plan_chain(router, configs, number, live)
    except RoutingError as exc:
        print(f"{number}: {exc.reason}")
        return 1
    print(f"{number}: prefix carrier {home}")
    print(f"  ported: {_describe(entry, table.now) if entry else 'not known'}")
    if live is not None and live not in configs:
        print(f"  ({live} is not in this config: ignored)")
    print(f"  a job goes to {first}" + (f"; chain {' → '.join(chain)}" if chain else ""))
    return 0


async def _list(table: PortedTable, limit: int) -> int:
    entries = await table.listing(limit)
    if not entries:
        print("no ported numbers")
    for entry in entries:
        print(_describe(entry, table.now))
    return 0


async def _import(table: PortedTable, config: Config, file: str) -> int:
    carriers = [c.name for c in config.carriers]
    parsed = read_ported_file(file, config.routing.country_code, carriers)
    if parsed.problems:
        print(f"{file}: not imported, nothing changed:", file=sys.stderr)
        print(shown(parsed.problems), file=sys.stderr)
        return 2
    started = time.monotonic()
    report = await table.put(parsed.entries)
    print(
        f"{file}: {len(parsed.entries)} numbers: {report.added} added, {report.changed} "
        f"changed, {report.unchanged} unchanged ({time.monotonic() - started:.2f} s)"
    )
    return 0


async def _forget(table: PortedTable, config: Config, raw: str) -> int:
    number = _number(raw, config)
    gone = await table.forget(number)
    if gone is None:
        print(f"{number}: not known; nothing changed")
    else:
        print(f"{number}: forgot {gone.carrier} ({gone.source}); routed by prefix again")
    return 0


async def _open(config: Config) -> PortedTable:
    if config.store.backend is StoreBackend.POSTGRES:
        assert config.store.dsn is not None  # the config reader requires it
        return await PostgresTable.connect(config.store.dsn.reveal())
    return SqliteTable(config.store.path)


async def _act(config: Config, args: argparse.Namespace) -> int:
    table = await _open(config)
    try:
        if args.action == "lookup":
            return await _lookup(table, config, args.number)
        if args.action == "list":
            return await _list(table, max(1, args.limit))
        if args.action == "import":
            return await _import(table, config, args.file)
        return await _forget(table, config, args.number)
    finally:
        await table.close()


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{args.config}: {problem}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_act(config, args))
    except RoutingError as exc:
        print(f"smppgw routes: {exc.reason}", file=sys.stderr)
        return 2
    except (StoreError, sqlite3.Error) as exc:  # never the DSN: it may hold a password
        print(f"smppgw routes: {describe(config)}: {exc}", file=sys.stderr)
        return 2
