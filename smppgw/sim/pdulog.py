"""JSON-lines PDU log: one line per PDU in or out, for reading what a client really sent.

Off by default because it costs more than everything else per PDU. Lines are buffered and
written by the event loop in batches; several simulators of one process sharing a path
share one writer, so their lines never interleave mid-line. Passwords are never written.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, TextIO

import orjson

from smppgw.smpp.constants import status_name
from smppgw.smpp.pdu import Pdu

_KEY_FIELDS = (
    "system_id",
    "system_type",
    "interface_version",
    "source_addr_ton",
    "source_addr",
    "dest_addr_ton",
    "destination_addr",
    "esm_class",
    "registered_delivery",
    "data_coding",
    "message_id",
)


def pdu_fields(pdu: Pdu) -> dict[str, Any]:
    """The fields worth logging: addresses, flags, ids and the message octets as hex."""
    fields: dict[str, Any] = {}
    for name in _KEY_FIELDS:
        value = getattr(pdu, name, None)
        if value is not None and value != "":
            fields[name] = value
    sm = getattr(pdu, "short_message", None)
    if sm:
        fields["short_message"] = sm.hex()
    if pdu.tlvs:
        fields["tlvs"] = {f"0x{tag:04x}": value.hex() for tag, value in pdu.tlvs}
    return fields


class PduLog:
    """A shared, buffered JSON-lines file."""

    _open: ClassVar[dict[str, PduLog]] = {}

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: TextIO = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in release()
        self._users = 0

    @classmethod
    def acquire(cls, path: str) -> PduLog:
        log = cls._open.get(path)
        if log is None:
            log = cls._open[path] = PduLog(path)
        log._users += 1
        return log

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self._open.pop(self.path, None)
            self._file.close()

    def write(self, smsc: str, peer: str, direction: str, pdu: Pdu) -> None:
        record = {
            "time": round(time.time(), 6),
            "smsc": smsc,
            "peer": peer,
            "dir": direction,
            "command": pdu.name,
            "sequence": pdu.sequence,
            "status": status_name(pdu.status) if pdu.status else "ESME_ROK",
            **pdu_fields(pdu),
        }
        self._file.write(orjson.dumps(record).decode() + "\n")

    def write_raw(self, smsc: str, peer: str, direction: str, event: str, **extra: Any) -> None:
        """A line for something that is not a decoded PDU (a broken frame, a close)."""
        record = {"time": round(time.time(), 6), "smsc": smsc, "peer": peer, "dir": direction}
        record["event"] = event
        record.update(extra)
        self._file.write(orjson.dumps(record).decode() + "\n")

    def flush(self) -> None:
        self._file.flush()
