"""``smppgw routes --config FILE lookup NUMBER | list | import FILE.csv | forget NUMBER``.

The ported-number cache (README, "Failover and ported numbers"), read and changed in the
store of a gateway that may be running: SQLite's WAL lets this second connection read
while the gateway writes, and a change commits in one short transaction (the gateway
waits up to its busy timeout for it). The gateway's intake reads the table on every job,
so a change applies to the next job; nothing needs a reload.

``import`` reads the operator's CSV (``number,carrier`` lines, README), refuses the whole
file when any line is wrong (saying which), and otherwise sets every number in one
transaction, then says what it changed.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from smppgw.config import Config, ConfigError
from smppgw.config.loader import load_config
from smppgw.pipeline.failover import plan_chain
from smppgw.pipeline.ported import read_ported_file, shown
from smppgw.pipeline.routing import Router, RoutingError, normalize_msisdn
from smppgw.store import StoreError
from smppgw.store import routes as ported
from smppgw.store.schema import connect
from smppgw.store.writer import Tx


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


def _lookup(tx: Tx, config: Config, raw: str) -> int:
    number = _number(raw, config)
    configs = {c.name: c for c in config.carriers}
    router = Router(config.carriers, config.routing)
    entry = ported.get(tx, number)
    live = ported.ported_carrier(tx.conn, number, tx.now)
    try:
        home = router.route(number)
        first, chain = plan_chain(router, configs, number, live)
    except RoutingError as exc:
        print(f"{number}: {exc.reason}")
        return 1
    print(f"{number}: prefix carrier {home}")
    print(f"  ported: {_describe(entry, tx.now) if entry else 'not known'}")
    if live is not None and live not in configs:
        print(f"  ({live} is not in this config: ignored)")
    print(f"  a job goes to {first}" + (f"; chain {' → '.join(chain)}" if chain else ""))
    return 0


def _list(tx: Tx, limit: int) -> int:
    entries = ported.list_ported(tx, limit)
    if not entries:
        print("no ported numbers")
    for entry in entries:
        print(_describe(entry, tx.now))
    return 0


def _import(conn: sqlite3.Connection, config: Config, file: str) -> int:
    carriers = [c.name for c in config.carriers]
    parsed = read_ported_file(file, config.routing.country_code, carriers)
    if parsed.problems:
        print(f"{file}: not imported, nothing changed:", file=sys.stderr)
        print(shown(parsed.problems), file=sys.stderr)
        return 2
    started = time.monotonic()
    conn.execute("BEGIN IMMEDIATE")
    try:
        report = ported.import_ported(
            Tx(conn, time.time()), parsed.entries, ported.IMPORTED, replace_source=False
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    print(
        f"{file}: {len(parsed.entries)} numbers: {report.added} added, {report.changed} "
        f"changed, {report.unchanged} unchanged ({time.monotonic() - started:.2f} s)"
    )
    return 0


def _forget(conn: sqlite3.Connection, config: Config, raw: str) -> int:
    number = _number(raw, config)
    conn.execute("BEGIN IMMEDIATE")
    try:
        gone = ported.forget(Tx(conn, time.time()), number)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if gone is None:
        print(f"{number}: not known; nothing changed")
    else:
        print(f"{number}: forgot {gone.carrier} ({gone.source}); routed by prefix again")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{args.config}: {problem}", file=sys.stderr)
        return 2
    path = config.store.path
    if not Path(path).exists():
        print(f"smppgw routes: no store at {path}", file=sys.stderr)
        return 2
    try:
        conn = connect(path, busy_timeout=10.0, synchronous="NORMAL")
    except (StoreError, sqlite3.Error) as exc:
        print(f"smppgw routes: {path}: {exc}", file=sys.stderr)
        return 2
    try:
        tx = Tx(conn, time.time())
        if args.action == "lookup":
            return _lookup(tx, config, args.number)
        if args.action == "list":
            return _list(tx, max(1, args.limit))
        if args.action == "import":
            return _import(conn, config, args.file)
        return _forget(conn, config, args.number)
    except RoutingError as exc:
        print(f"smppgw routes: {exc.reason}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"smppgw routes: {path}: {exc}", file=sys.stderr)
        return 2
    finally:
        conn.close()
