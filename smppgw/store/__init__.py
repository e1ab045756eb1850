"""The gateway's durable state: SQLite in WAL mode, one writer thread, group commit.

``Store`` (in ``api``) is the asyncio face; ``ops`` holds the SQL of each operation,
``writer`` the thread and its batching, ``schema`` the tables and the durability argument,
``model`` the values that cross the boundary.
"""

from smppgw.store.api import Store
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
    "StoreError",
    "StoreStats",
    "StoredJob",
    "Usage",
]
