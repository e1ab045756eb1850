"""What the simulated SMSC refuses in a submit_sm / data_sm, and with which status.

Real SMSCs differ in strictness; this one refuses what every carrier refuses (no or
malformed destination, unknown data_coding, a message too long for one SMS, malformed
times), so a gateway that passes here is not relying on a lenient peer.
"""

from __future__ import annotations

from smppgw.smpp.constants import Status, Tag
from smppgw.smpp.pdu import DataSm, SubmitSm

#: data_coding values an SMSC can deliver: GSM default, IA5, 8-bit binary, Latin-1,
#: 8-bit binary, UCS2, and the GSM 03.38 "data coding / message class" group 0xF0-0xFF.
SUPPORTED_DATA_CODINGS = frozenset({0x00, 0x01, 0x02, 0x03, 0x04, 0x08, *range(0xF0, 0x100)})
#: Octet data_codings: one SMS carries 140 octets; text ones hold 160 unpacked septets.
_OCTET_CODINGS = frozenset({0x02, 0x03, 0x04, 0x08, *range(0xF4, 0xF8), *range(0xFC, 0x100)})
MAX_OCTETS = 140
MAX_SEPTETS = 160
MAX_PAYLOAD = 64 * 1024
_DIGITS = frozenset("0123456789")
_TON_ALPHANUMERIC = 5


def _bad_number(address: str, ton: int) -> bool:
    if ton == _TON_ALPHANUMERIC:
        return not 0 < len(address) <= 11
    return not (0 < len(address) <= 21 and address.isascii() and address.isdigit())


def check_submit(pdu: SubmitSm | DataSm) -> int:
    """ESME_ROK, or the status the SMSC answers this submit with."""
    if _bad_number(pdu.destination_addr, pdu.dest_addr_ton):
        return Status.ESME_RINVDSTADR
    if pdu.source_addr and _bad_number(pdu.source_addr, pdu.source_addr_ton):
        return Status.ESME_RINVSRCADR
    coding = pdu.data_coding
    if coding not in SUPPORTED_DATA_CODINGS:
        return Status.ESME_RINVDCS
    payload = pdu.tlv(Tag.MESSAGE_PAYLOAD) if pdu.tlvs else None
    if type(pdu) is SubmitSm:
        sm_length = len(pdu.short_message)
        if payload is not None:
            if sm_length:  # SMPP 3.4 5.3.2.32: never both
                return Status.ESME_RINVMSGLEN
        elif sm_length > (MAX_OCTETS if coding in _OCTET_CODINGS else MAX_SEPTETS):
            return Status.ESME_RINVMSGLEN
        if pdu.validity_period and len(pdu.validity_period) != 16:
            return Status.ESME_RINVEXPIRY
        if pdu.schedule_delivery_time and len(pdu.schedule_delivery_time) != 16:
            return Status.ESME_RINVSCHED
    elif payload is None:
        return Status.ESME_RMISSINGOPTPARAM  # data_sm carries its text in message_payload
    if payload is not None and len(payload) > MAX_PAYLOAD:
        return Status.ESME_RINVMSGLEN
    return Status.ESME_ROK
