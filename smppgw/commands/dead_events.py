"""``smppgw dead-events --config FILE``: the events the broker would not take.

The outbox sets such an event aside (table ``dead_events``) so that the others keep
flowing; this shows them, newest first, with the reason, so an operator can see what was
refused and why (an ACL, a response topic that is not a topic name, a packet too large)
and publish one again by hand if it still matters (README, "Troubleshooting"). The store
is opened read-only: safe while the gateway runs. With ``store.backend: postgres`` it
reads the cluster's shared table (every gateway's set-aside events).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smppgw.config import ConfigError, StoreBackend
from smppgw.config.loader import load_config
from smppgw.store import DeadEvent, StoreError, ops
from smppgw.store.factory import describe
from smppgw.store.writer import Tx

#: Characters of the topic and of the payload shown per line in the text listing.
_TOPIC_SHOWN = 60
_PAYLOAD_SHOWN = 80


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="the gateway's config")
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    parser.add_argument(
        "--limit", type=int, default=50, metavar="N", help="show the N newest (default 50)"
    )


def _read(path: str, limit: int) -> list[DeadEvent]:
    if not Path(path).exists():
        raise sqlite3.OperationalError(f"no store at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return ops.dead_events(Tx(conn, time.time()), limit)
    finally:
        conn.close()


async def _read_postgres(dsn: str, limit: int) -> list[DeadEvent]:
    """The shared store's dead events, on a connection of its own (this command is no
    gateway: it takes no lease, writes nothing)."""
    import asyncpg

    from smppgw.store.pg import ops as pg_ops
    from smppgw.store.pg.writer import PgTx

    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from exc
    try:
        return await pg_ops.dead_events(PgTx(conn, time.time(), "dead-events"), limit)
    except asyncpg.PostgresError as exc:
        raise StoreError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        await conn.close()


def _as_json(event: DeadEvent) -> str:
    record: dict[str, Any] = {
        "event_id": event.event_id,
        "topic": event.topic,
        "reason": event.reason,
        "dead_at": _when(event.dead_at),
    }
    try:
        record["payload"] = event.payload.decode("utf-8")
    except UnicodeDecodeError:
        record["payload_base64"] = base64.b64encode(event.payload).decode("ascii")
    if event.correlation_data is not None:
        record["correlation_data_hex"] = event.correlation_data.hex()
    return json.dumps(record, ensure_ascii=False)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _as_line(event: DeadEvent) -> str:
    head = event.payload[: _PAYLOAD_SHOWN * 4].decode("utf-8", "replace")
    return (
        f"{_when(event.dead_at)}  #{event.event_id}  {_shorten(event.topic, _TOPIC_SHOWN)!r}\n"
        f"    reason: {event.reason}\n"
        f"    payload: {_shorten(head, _PAYLOAD_SHOWN)}"
    )


def run(args: argparse.Namespace) -> int:
    if args.limit < 1:
        print("smppgw dead-events: --limit must be at least 1", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{args.config}: {problem}", file=sys.stderr)
        return 2
    if config.store.backend is StoreBackend.POSTGRES:
        assert config.store.dsn is not None
        try:
            events = asyncio.run(_read_postgres(config.store.dsn.reveal(), args.limit))
        except StoreError as exc:  # never the DSN: it may hold a password
            print(f"smppgw dead-events: {describe(config)}: {exc}", file=sys.stderr)
            return 2
    else:
        try:
            events = _read(config.store.path, args.limit)
        except sqlite3.Error as exc:
            print(f"smppgw dead-events: {config.store.path}: {exc}", file=sys.stderr)
            return 2
    if args.json:
        for event in events:
            print(_as_json(event))
    elif not events:
        print("no events set aside")
    else:
        print("\n".join(_as_line(event) for event in events))
    return 0
