"""The store a config asks for: SQLite (``store.path``) or PostgreSQL (``store.dsn``).

asyncpg is imported only for ``backend: postgres``, so the SQLite default loads nothing
more than it did before the cluster existed.
"""

from __future__ import annotations

from collections.abc import Callable

from smppgw.config.model import Config, StoreBackend
from smppgw.store.api import Store, WriterMode
from smppgw.store.contract import StoreAPI

#: ``store.writer`` (checked by the config reader) as the store's own type.
_WRITERS: dict[str, WriterMode] = {"process": "process", "thread": "thread", "auto": "auto"}


def make_store(
    config: Config, *, on_batch: Callable[[int, float | None], None] | None = None
) -> StoreAPI:
    store = config.store
    if store.backend is StoreBackend.POSTGRES:
        from smppgw.store.pg import PostgresStore

        assert store.dsn is not None  # the config reader requires it
        return PostgresStore(
            store.dsn.reveal(),
            node=config.cluster.node_id,
            lease=store.lease,
            keep_text=store.keep_text,
            on_batch=on_batch,
        )
    return Store(
        store.path,
        commit_interval=store.commit_interval,
        keep_text=store.keep_text,
        on_batch=on_batch,
        writer=_WRITERS[store.writer],
    )


def describe(config: Config) -> str:
    """Where the store is, safe for a log line (never the DSN)."""
    if config.store.backend is StoreBackend.POSTGRES:
        return f"postgres (node {config.cluster.node_id})"
    return config.store.path
