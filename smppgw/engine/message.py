"""What the gateway hands a carrier to send: one job, routed and validated.

Lives apart from ``jobs`` (the MQTT schema) and ``carrier`` (the sending engine) so that
both can use it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from smppgw.config import SourceConfig


class Priority(IntEnum):
    """Lanes, served strictly in this order: a lower value always goes first."""

    HIGH = 0
    NORMAL = 1
    LOW = 2

    @classmethod
    def parse(cls, name: str) -> Priority:
        return cls[name.upper()]


@dataclass(slots=True)
class OutboundMessage:
    job_id: str
    #: Destination in E.164 digits, no "+".
    destination: str
    #: NFC-normalised text.
    text: str
    priority: Priority = Priority.NORMAL
    #: Sender; ``None`` means the carrier's default source.
    source: SourceConfig | None = None
    #: Request a delivery receipt.
    dlr: bool = True
    #: Wall-clock (``time.time()``) deadline from the job's ttl; not submitted after it.
    expires_at: float | None = None
    #: Transient-failure retries already spent.
    attempt: int = 0
    #: Parts the SMSC accepted, set by the carrier before it reports the job finished: a
    #: job with any part accepted never moves to another carrier (failover).
    accepted: int = 0
    #: The sender's own record of the job (the store's ``StoredJob``), handed back
    #: untouched in the outcome callbacks so that nobody joins it again by id.
    context: Any = field(default=None, compare=False, repr=False)
