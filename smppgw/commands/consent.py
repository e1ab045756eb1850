"""``smppgw consent --config FILE list | add NUMBER | remove NUMBER | import FILE.csv |
export``: the Do-Not-Call list in the gateway's store.

``add`` opts a number out (no ``marketing`` job reaches it: ``rejected`` ``opted_out``),
``remove`` takes it off the list; ``import`` opts out every number of a CSV file (the
first column; a header line, blank lines and ``#`` comments are skipped) in one
transaction, so an imported list of 100,000 numbers takes seconds and is all or nothing.
Numbers are normalised like a job's ``to`` (``routing.country_code``). Each change is
announced on ``sms/consent`` (``"source": "admin"``) through the gateway's outbox and
counted in ``smppgw_consent_changes_total{source="admin"}``.

It opens the store with a second SQLite connection: WAL lets it run beside the gateway
(each write waits up to 10 s for the gateway's current transaction). The gateway reads a
number's consent in the transaction that takes each marketing job, so a change applies to
the next job. With ``store.backend: postgres`` it changes the cluster's shared tables on
a connection of its own (every gateway sees the change at its next marketing job); the
events go to the outbox of the live gateway with the longest lease, which publishes them.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smppgw.config import Config, ConfigError, StoreBackend
from smppgw.config.loader import load_config
from smppgw.pipeline.consent import consent_payload
from smppgw.pipeline.routing import RoutingError, normalize_msisdn
from smppgw.store import ConsentRecord, OutboxEvent, StoreError, ops
from smppgw.store.factory import describe
from smppgw.store.schema import connect
from smppgw.store.writer import Tx

#: Seconds a write waits for the gateway's transaction to finish.
BUSY_TIMEOUT = 10.0
#: Invalid lines named one by one in the import summary; the rest are counted.
SHOW_INVALID = 20


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="the gateway's config")
    sub = parser.add_subparsers(dest="consent_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="numbers opted out (the Do-Not-Call list), newest first")
    listing.add_argument("--all", action="store_true", help="opted-in numbers too")
    listing.add_argument("--limit", type=int, default=100, metavar="N", help="default 100")
    add = sub.add_parser(
        "add", help="opt a number out: add it to the Do-Not-Call list (no marketing jobs)"
    )
    add.add_argument("number", metavar="NUMBER")
    remove = sub.add_parser(
        "remove", help="take a number off the Do-Not-Call list (marketing jobs may go again)"
    )
    remove.add_argument("number", metavar="NUMBER")
    load = sub.add_parser(
        "import", help="opt out every number of a CSV file (first column), one transaction"
    )
    load.add_argument("file", metavar="FILE.csv", help="'-' reads stdin")
    export = sub.add_parser("export", help="the Do-Not-Call list as CSV on stdout")
    export.add_argument("--all", action="store_true", help="opted-in numbers too")


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def numbers_of(lines: Iterator[str], country_code: str) -> tuple[list[str], list[str]]:
    """The normalised numbers of a CSV file's lines, and the invalid lines, each as
    ``"line N: why"``. The first column is the number; a first line without a digit is
    a header; blank lines and lines starting with ``#`` are skipped."""
    numbers: list[str] = []
    invalid: list[str] = []
    for index, row in enumerate(csv.reader(lines), start=1):
        first = row[0].strip() if row else ""
        if not first or first.startswith("#"):
            continue
        if index == 1 and not any(c.isdigit() for c in first):
            continue  # a header
        try:
            numbers.append(normalize_msisdn(first, country_code))
        except RoutingError as exc:
            invalid.append(f"line {index}: {exc.reason}")
    return numbers, invalid


class ConsentList:
    """The consent table of one SQLite store, through its own connection."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._conn = connect(config.store.path, busy_timeout=BUSY_TIMEOUT, synchronous="NORMAL")

    def close(self) -> None:
        self._conn.close()

    def records(self, opted_out_only: bool, limit: int | None) -> list[ConsentRecord]:
        return ops.consent_records(Tx(self._conn, time.time()), opted_out_only, limit)

    def change(self, numbers: list[str], opted_out: bool) -> list[str]:
        """Opt ``numbers`` out (or back in) in one transaction; returns those changed."""
        now = time.time()
        topic = self._config.mqtt.consent_topic
        action = "opt_out" if opted_out else "opt_in"

        def event(number: str) -> OutboxEvent:
            return OutboxEvent(topic, consent_payload(number, action, None, None, now, "admin"))

        self._conn.execute("BEGIN IMMEDIATE")
        try:
            changed = ops.set_opted_out(Tx(self._conn, now), numbers, opted_out, event)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return changed


class PostgresConsentList:
    """The consent table of the cluster's PostgreSQL store, on a connection of its own
    (this command is no gateway: it takes no lease). Sync methods over a private event
    loop, so the commands below serve both backends."""

    def __init__(self, config: Config) -> None:
        import asyncpg

        dsn = config.store.dsn
        assert dsn is not None  # the config reader requires it
        self._config = config
        self._errors = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
        self._loop = asyncio.new_event_loop()
        try:
            self._conn = self._call(lambda: asyncpg.connect(dsn.reveal(), timeout=5))
            self._call(self._check_schema)
        except BaseException:
            self._loop.close()
            raise

    async def _check_schema(self) -> None:
        """The command changes no schema (the gateways and ``smppgw migrate`` do, under
        their lock); an older one is named rather than met as a missing table."""
        from smppgw.store.pg.schema import SCHEMA_VERSION, schema_version

        version = await schema_version(self._conn)
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {version} is older than this smppgw's "
                f"({SCHEMA_VERSION}): run `smppgw migrate` (or start a gateway) first"
            )

    def _call(self, make: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return self._loop.run_until_complete(make())
        except self._errors as exc:
            raise StoreError(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        try:
            self._call(self._conn.close)
        finally:
            self._loop.close()

    def records(self, opted_out_only: bool, limit: int | None) -> list[ConsentRecord]:
        from smppgw.store.pg import consent as pg_consent
        from smppgw.store.pg.writer import PgTx

        tx = PgTx(self._conn, time.time(), "smppgw-consent")
        records: list[ConsentRecord] = self._call(
            lambda: pg_consent.consent_records(tx, opted_out_only, limit)
        )
        return records

    def change(self, numbers: list[str], opted_out: bool) -> list[str]:
        """Opt ``numbers`` out (or back in) in one transaction; returns those changed."""
        from smppgw.store.pg import consent as pg_consent
        from smppgw.store.pg.writer import PgTx

        now = time.time()
        topic = self._config.mqtt.consent_topic
        action = "opt_out" if opted_out else "opt_in"

        def event(number: str) -> OutboxEvent:
            return OutboxEvent(topic, consent_payload(number, action, None, None, now, "admin"))

        async def change() -> list[str]:
            async with self._conn.transaction():
                tx = PgTx(self._conn, now, "")
                tx.node = await pg_consent.publisher(tx, self._config.cluster.node_id)
                return await pg_consent.set_opted_out(tx, numbers, opted_out, event)

        changed: list[str] = self._call(change)
        return changed


AnyConsentList = ConsentList | PostgresConsentList


def open_consent(config: Config) -> AnyConsentList:
    if config.store.backend is StoreBackend.POSTGRES:
        return PostgresConsentList(config)
    return ConsentList(config)


def _print_records(records: list[ConsentRecord]) -> None:
    if not records:
        print("no numbers")
        return
    for r in records:
        state = "opted out" if r.opted_out else "opted in"
        how = r.source + (f" {r.keyword!r}" if r.keyword else "")
        via = f" via {r.carrier}" if r.carrier else ""
        print(f"{r.number}  {state:9}  {_when(r.changed_at)}  {how}{via}")


def _export(records: list[ConsentRecord]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["number", "status", "keyword", "source", "carrier", "changed_at"])
    for r in records:
        status = "opted_out" if r.opted_out else "opted_in"
        writer.writerow(
            [r.number, status, r.keyword or "", r.source, r.carrier or "", _when(r.changed_at)]
        )
    sys.stdout.write(out.getvalue())


def _import(consent: AnyConsentList, file: str, country_code: str) -> int:
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"smppgw consent import: {file}: {exc}", file=sys.stderr)
        return 2
    numbers, invalid = numbers_of(iter(text.splitlines()), country_code)
    started = time.perf_counter()
    changed = consent.change(numbers, opted_out=True)
    seconds = time.perf_counter() - started
    unique = len(set(numbers))
    summary = f"added {len(changed)}, already opted out {unique - len(changed)}"
    if len(numbers) > unique:
        summary += f", repeated in the file {len(numbers) - unique}"
    summary += f", invalid lines: {len(invalid)}"
    print(f"{summary} ({seconds:.2f} s)")
    for line in invalid[:SHOW_INVALID]:
        print(f"  {line}")
    if len(invalid) > SHOW_INVALID:
        print(f"  ... and {len(invalid) - SHOW_INVALID} more")
    return 0


def _one(consent: AnyConsentList, raw: str, country_code: str, opted_out: bool) -> int:
    try:
        number = normalize_msisdn(raw, country_code)
    except RoutingError as exc:
        print(f"smppgw consent: {exc.reason}", file=sys.stderr)
        return 2
    changed = consent.change([number], opted_out)
    if opted_out:
        print(f"{number}: opted out" if changed else f"{number}: already opted out")
    else:
        print(f"{number}: removed from the list" if changed else f"{number}: not on the list")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{args.config}: {problem}", file=sys.stderr)
        return 2
    where = describe(config)
    try:
        consent = open_consent(config)
    except (StoreError, sqlite3.Error) as exc:
        print(f"smppgw consent: {where}: {exc}", file=sys.stderr)
        return 2
    country_code = config.routing.country_code
    try:
        command = args.consent_command
        if command == "list":
            _print_records(consent.records(not args.all, max(1, args.limit)))
        elif command == "export":
            _export(consent.records(not args.all, None))
        elif command in ("add", "remove"):
            return _one(consent, args.number, country_code, command == "add")
        else:
            return _import(consent, args.file, country_code)
        return 0
    except (StoreError, sqlite3.Error) as exc:
        print(f"smppgw consent: {where}: {exc}", file=sys.stderr)
        return 1
    finally:
        consent.close()
