"""The store on PostgreSQL (``store.backend: postgres``), shared by a cluster of gateways.

``api.PostgresStore`` is the asyncio face (the same contract as the SQLite ``Store``),
``ops`` the SQL of each operation, ``writer`` the group-commit task on one asyncpg
connection, ``schema`` the versioned migrations. Imported only when configured, so the
SQLite default never loads asyncpg.
"""

from smppgw.store.pg.api import PostgresStore

__all__ = ["PostgresStore"]
