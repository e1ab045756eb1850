"""The gateway's durable state: SQLite in WAL mode, one writer thread, group commit.

``Store`` (in ``api``) is the asyncio face; ``ops`` holds the SQL of each operation,
``writer`` the thread and its batching, ``schema`` the tables and the durability argument,
``model`` the values that cross the boundary. ``contract.StoreAPI`` is what the gateway
uses, implemented by ``Store`` and by ``pg.PostgresStore`` (``store.backend: postgres``);
``factory.make_store`` picks one from the config.
"""

from smppgw.store.api import Store
from smppgw.store.contract import StoreAPI
from smppgw.store.model import (
    ConsentChange,
    ConsentRecord,
    DeadEvent,
    JobState,
    JobView,
    OutboxEvent,
    RecoveryReport,
    ReplyWindow,
    StoredJob,
    StoreError,
    StoreStats,
    Usage,
)

__all__ = [
    "ConsentChange",
    "ConsentRecord",
    "DeadEvent",
    "JobState",
    "JobView",
    "OutboxEvent",
    "RecoveryReport",
    "ReplyWindow",
    "Store",
    "StoreAPI",
    "StoreError",
    "StoreStats",
    "StoredJob",
    "Usage",
]
