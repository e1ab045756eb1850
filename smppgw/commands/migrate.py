"""``smppgw migrate --config FILE``: bring the store's schema up to date, then exit.

Gateways migrate at start by themselves (PostgreSQL under an advisory lock, so several
starting at once do not race); this runs only that step, for a deploy pipeline that wants
the schema changed before any new gateway starts, or to check that the database is
reachable with the configured credentials. Exit 0 when current, 1 when the store cannot
be reached or refuses (a newer schema), 2 for an unusable config. The DSN is never
printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from smppgw.config import ConfigError, StoreBackend
from smppgw.config.loader import load_config
from smppgw.store import Store, StoreError
from smppgw.store.factory import describe


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="YAML config file")


async def _migrate(config_file: str) -> int:
    config = load_config(config_file)
    where = describe(config)
    try:
        if config.store.backend is StoreBackend.POSTGRES:
            from smppgw.store.pg import PostgresStore
            from smppgw.store.pg.schema import SCHEMA_VERSION as PG_VERSION

            assert config.store.dsn is not None
            store = PostgresStore(config.store.dsn.reveal(), node=config.cluster.node_id)
            applied = await store.migrate()
            version = PG_VERSION
        else:
            from smppgw.store.schema import SCHEMA_VERSION

            async with Store(config.store.path):  # creates or upgrades, then closes
                pass
            applied, version = [], SCHEMA_VERSION
    except StoreError as exc:
        print(f"smppgw migrate: {where}: {exc}", file=sys.stderr)
        return 1
    done = f"applied {', '.join(map(str, applied))}" if applied else "nothing to apply"
    print(f"smppgw migrate: {where}: schema version {version} ({done})")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_migrate(args.config))
    except ConfigError as exc:
        print(f"{args.config}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
