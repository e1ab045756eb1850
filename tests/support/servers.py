"""PostgreSQL and redis-server for tests: :mod:`smppgw.cluster.servers` (shared with
``smppgw bench e2e --backend postgres``); the fixtures are in tests/conftest.py."""

from smppgw.cluster.servers import (
    Postgres,
    Redis,
    ServerMissing,
    find_postgres_bin,
    find_redis,
)

__all__ = ["Postgres", "Redis", "ServerMissing", "find_postgres_bin", "find_redis"]
