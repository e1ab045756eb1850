"""Job → submit_sm: the text split into parts and each part's PDU, built once per job.

The PDUs are kept on the job for its retries, so a resent part is byte-for-byte the part
first sent (same concatenation reference). Only the validity period is stamped at each send,
because it counts down from the job's deadline.
"""

from __future__ import annotations

import time

from smppgw.config import CarrierConfig
from smppgw.engine.message import OutboundMessage
from smppgw.smpp.pdu import SubmitSm
from smppgw.smpp.text import Concat, RefCounter, split


def relative_validity(seconds: float) -> str:
    """SMPP relative time "YYMMDDhhmmss000R" (years of 365 days, months of 30)."""
    s = max(1, int(seconds))
    years, s = divmod(s, 365 * 86400)
    months, s = divmod(s, 30 * 86400)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, secs = divmod(s, 60)
    return f"{min(years, 99):02d}{months:02d}{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


class PduBuilder:
    """Builds a carrier's submit_sm; owns its concatenation reference counter."""

    __slots__ = ("_refs", "config")

    def __init__(self, config: CarrierConfig) -> None:
        self.config = config
        self._refs = RefCounter(8 if config.concat == Concat.UDH8 else 16)

    def build(self, msg: OutboundMessage) -> list[SubmitSm]:
        """Split the text and build the submit_sm of every part.

        Raises ``TextError`` / ``ValueError`` when the text cannot be sent (the job is
        rejected with code ``text``).
        """
        cfg = self.config
        parts = split(
            msg.text,
            coding=cfg.coding,
            concat=cfg.concat,
            ref=self._refs.next(msg.destination),
            max_parts=cfg.max_parts,
        )
        source = msg.source or cfg.source
        if source is not None:
            src_ton, src_npi, src_addr = source.ton, source.npi, source.address
        else:
            src_ton, src_npi, src_addr = 0, 0, ""  # the SMSC fills in the account default
        registered = 1 if msg.dlr else 0
        return [
            SubmitSm(
                tlvs=list(p.tlvs),
                source_addr_ton=src_ton,
                source_addr_npi=src_npi,
                source_addr=src_addr,
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr=msg.destination,
                esm_class=p.esm_class,
                registered_delivery=registered,
                data_coding=p.data_coding,
                short_message=p.short_message,
            )
            for p in parts
        ]

    @staticmethod
    def stamp(pdu: SubmitSm, msg: OutboundMessage) -> SubmitSm:
        """The part as it goes out now: its validity counts down to the job's deadline."""
        if msg.expires_at is not None:
            pdu.validity_period = relative_validity(msg.expires_at - time.time())
        return pdu
