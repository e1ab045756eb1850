"""Delivery receipts: parse them, match their ids, and write them (for the simulator).

Receipts come in as deliver_sm (or data_sm) whose esm_class says "SMSC delivery receipt".
SMPP 3.4 puts the facts in TLVs (receipted_message_id, message_state, network_error_code),
but most SMSCs only fill the de-facto ``id:… sub:… dlvrd:… submit date:… done date:…
stat:… err:… text:…`` text, each with its own spelling. We read the TLVs first and fill
whatever they lack from the text, and accept the variants met in the field: any key case,
missing or extra fields, odd spacing, 10-, 12- or 14-digit dates, long state names.

Message ids are the other trap: a carrier may answer submit_sm with a hex id and report it
in the receipt in decimal (or with other case / leading zeros). :func:`normalize_message_id`
maps both sides to one canonical string per the carrier's configured base.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from smppgw.smpp.constants import Tag
from smppgw.smpp.fields import MAX_MESSAGE_ID

__all__ = [
    "FINAL_STATES",
    "STATES",
    "Receipt",
    "ReceiptError",
    "format_receipt_text",
    "is_receipt",
    "normalize_message_id",
    "parse_receipt",
]

#: message_state TLV value → the receipt text's stat name.
STATES: dict[int, str] = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
#: States after which no further receipt for the message is expected.
FINAL_STATES = frozenset(STATES.values()) - {"ENROUTE", "ACCEPTD"}

_STAT_ALIASES: dict[str, str] = {
    "DELIVRD": "DELIVRD",
    "DELIVERED": "DELIVRD",
    "DELIVERD": "DELIVRD",
    "UNDELIV": "UNDELIV",
    "UNDELIVERABLE": "UNDELIV",
    "UNDELIVERED": "UNDELIV",
    "UNDELIVRD": "UNDELIV",
    "REJECTD": "REJECTD",
    "REJECTED": "REJECTD",
    "EXPIRED": "EXPIRED",
    "EXPIRD": "EXPIRED",
    "DELETED": "DELETED",
    "DELETD": "DELETED",
    "ACCEPTD": "ACCEPTD",
    "ACCEPTED": "ACCEPTD",
    "UNKNOWN": "UNKNOWN",
    "UNKNWN": "UNKNOWN",
    "ENROUTE": "ENROUTE",
    "EN_ROUTE": "ENROUTE",
    "EN-ROUTE": "ENROUTE",
}

# Plain ints: an IntEnum member in a comparison costs a lookup per TLV of every receipt.
_RECEIPTED_MESSAGE_ID = int(Tag.RECEIPTED_MESSAGE_ID)
_MESSAGE_STATE = int(Tag.MESSAGE_STATE)
_NETWORK_ERROR_CODE = int(Tag.NETWORK_ERROR_CODE)

# esm_class bits 5-2: 0001 SMSC delivery receipt, 1000 intermediate delivery notification.
_ESM_TYPE_MASK = 0x3C
_ESM_RECEIPT_TYPES = (0x04, 0x20)


class ReceiptError(ValueError):
    """The PDU is not a receipt we can match: no message id in its TLVs or its text."""


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__
# (~2.4x the time), and one is built per job; nothing assigns to one after that.
@dataclass(slots=True)
class Receipt:
    message_id: str  # as received (stripped); normalise before matching
    state: str  # one of STATES' values
    final: bool
    error: str | None  # the text's err: field, else network_error_code as hex
    submit_date: datetime | None
    done_date: datetime | None
    sub: str | None
    dlvrd: str | None
    text: str | None


def is_receipt(esm_class: int) -> bool:
    """Does this deliver_sm carry a delivery receipt (or an intermediate notification)?"""
    return (esm_class & _ESM_TYPE_MASK) in _ESM_RECEIPT_TYPES


# A key starts the text or follows whitespace; two-word keys tolerate any separator.
_KEY = re.compile(
    r"(?:^|(?<=\s))(id|sub|dlvrd|submit[\s_-]*date|done[\s_-]*date|stat|err|text)[ \t]*:[ \t]*",
    re.IGNORECASE,
)


_SEPARATORS = re.compile(r"[\s_-]+")


@lru_cache(maxsize=64)
def _key_name(raw: str) -> str:
    """``Submit_Date`` → ``submit date``: cached, as every receipt spells its keys alike."""
    return _SEPARATORS.sub(" ", raw.lower())


#: The receipt text as SMPP 3.4 Appendix B writes it and nearly every SMSC sends it: the
#: keys in lower case, in this order, one space apart. Every value but ``text`` is one word
#: (``\S*`` holds no whitespace, so no key can start inside one).
_STANDARD = re.compile(
    r"id:(\S+) sub:(\S*) dlvrd:(\S*) submit date:(\S*) done date:(\S*) stat:(\S*)"
    r" err:(\S*)(?: text:[ \t]*(.*))?",
    re.DOTALL,
)


def _text_fields(text: str) -> dict[str, str]:
    """The known fields of a receipt text; the first occurrence of a key wins.

    The standard layout is read with one regex match (a third of the time of the general
    scan, on every receipt); anything else goes to :func:`_scanned_fields`, which gives
    the same fields for a standard text (tests/smpp/test_receipt.py checks both agree).
    """
    standard = _STANDARD.fullmatch(text)
    if standard is None:
        return _scanned_fields(text)
    msgid, sub, dlvrd, submit_date, done_date, stat, err, free = standard.groups()
    fields = {
        "id": msgid,
        "sub": sub,
        "dlvrd": dlvrd,
        "submit date": submit_date,
        "done date": done_date,
        "stat": stat,
        "err": err,
    }
    if free is not None:
        fields["text"] = free.rstrip("\x00 \t\r\n")
    return fields


def _scanned_fields(text: str) -> dict[str, str]:
    """:func:`_text_fields` for any layout: every key where it stands, in any case."""
    fields: dict[str, str] = {}
    matches = list(_KEY.finditer(text))
    for n, m in enumerate(matches):
        following = matches[n + 1] if n + 1 < len(matches) else None
        key = _key_name(m.group(1))
        if key == "text":  # free text runs to the end and may contain anything
            fields.setdefault(key, text[m.end() :].rstrip("\x00 \t\r\n"))
            break
        end = following.start() if following is not None else len(text)
        words = text[m.end() : end].split(None, 1)
        fields.setdefault(key, words[0] if words else "")
    return fields


def _parse_date(value: str | None) -> datetime | None:
    """YYMMDDhhmm, YYMMDDhhmmss or YYYYMMDDhhmmss (SMSC local time); None when unreadable.

    Two-digit years are 20YY (strptime's %y would read "69" as 1969).
    """
    return None if not value else _parse_date_text(value)


@lru_cache(maxsize=256)
def _parse_date_text(value: str) -> datetime | None:
    """:func:`_parse_date`, cached: the receipts of one minute share their dates (and a
    ``datetime`` is immutable, so sharing one is safe)."""
    if not value or not value.isascii() or not value.isdigit():
        return None
    if len(value) == 14:
        year, rest = int(value[:4]), value[4:]
    elif len(value) in (10, 12):
        year, rest = 2000 + int(value[:2]), value[2:]
    else:
        return None
    try:
        return datetime(
            year,
            int(rest[0:2]),
            int(rest[2:4]),
            int(rest[4:6]),
            int(rest[6:8]),
            int(rest[8:10] or 0),
        )
    except ValueError:
        return None


def _state_from_stat(stat: str | None) -> str | None:
    if not stat:
        return None
    word = stat.strip().upper()
    if word in _STAT_ALIASES:
        return _STAT_ALIASES[word]
    if word.isdigit() and word.isascii():
        return STATES.get(int(word))
    return None


def parse_receipt(short_message: bytes, tlvs: list[tuple[int, bytes]]) -> Receipt:
    """Read a receipt from its TLVs, filling what they lack from the text.

    The TLV id and state win over the text's. A state that neither gives (or that is not one
    of the eight) is reported as ``UNKNOWN``. Raises :class:`ReceiptError` only when there
    is no message id at all; any other oddity yields ``None`` fields.
    """
    tlv_id: str | None = None
    tlv_state: str | None = None
    network_error: str | None = None
    for tag, value in tlvs:
        if tag == _RECEIPTED_MESSAGE_ID and tlv_id is None:
            tlv_id = value.split(b"\x00", 1)[0].decode("latin-1").strip() or None
        elif tag == _MESSAGE_STATE and tlv_state is None and value:
            tlv_state = STATES.get(int.from_bytes(value, "big"))
        elif tag == _NETWORK_ERROR_CODE and network_error is None and value:
            network_error = value.hex()

    # Receipt text is ASCII in practice; Latin-1 reads any octet without failing. Some
    # SMSCs NUL-terminate it (or pad with NULs): treat NULs as spaces.
    body = short_message.decode("latin-1").replace("\x00", " ") if short_message else ""
    fields = _text_fields(body) if body else {}
    message_id = tlv_id or fields.get("id") or None
    if message_id is None:
        raise ReceiptError("receipt has no message id (no receipted_message_id TLV, no id: field)")
    if len(message_id) > MAX_MESSAGE_ID:
        # No submit_sm_resp could have carried it (see pdu.MAX_MESSAGE_ID): it matches
        # nothing, and holding it for matching would cost what the SMSC chose.
        raise ReceiptError(
            f"receipt message id of {len(message_id)} octets, at most {MAX_MESSAGE_ID}"
        )
    state = tlv_state or _state_from_stat(fields.get("stat")) or "UNKNOWN"
    return Receipt(
        message_id=message_id,
        state=state,
        final=state in FINAL_STATES,
        error=fields.get("err") or network_error,
        submit_date=_parse_date(fields.get("submit date")),
        done_date=_parse_date(fields.get("done date")),
        sub=fields.get("sub"),
        dlvrd=fields.get("dlvrd"),
        text=fields.get("text"),
    )


_HEX = re.compile(r"[0-9a-fA-F]{1,64}")
_DEC = re.compile(r"[0-9]{1,200}")


def normalize_message_id(message_id: str, base: str = "string") -> str:
    """Canonical form of a message id, so a submit_sm_resp id and a receipt id compare equal.

    ``string``: trimmed, lower case, leading zeros dropped ("0" stays). ``hex`` and
    ``decimal``: the number in decimal. An id that is not valid in its base falls back to
    the ``string`` rule, so a misconfigured base degrades to exact matching.
    """
    value = message_id.strip()
    if base == "hex":
        if _HEX.fullmatch(value):
            return str(int(value, 16))
    elif base == "decimal":
        if _DEC.fullmatch(value):
            return value.lstrip("0") or "0"
    elif base != "string":
        raise ValueError(f"unknown message id base {base!r} (string, hex or decimal)")
    return value.lower().lstrip("0") or ("0" if value else "")


def format_receipt_text(
    message_id: str,
    state: str,
    submit_date: datetime,
    done_date: datetime,
    err: str = "000",
    text: str = "",
    sub: str = "001",
    dlvrd: str | None = None,
) -> bytes:
    """The standard receipt text (SMPP 3.4 Appendix B), as the simulator sends it.

    ``dlvrd`` defaults to 001 for DELIVRD, else 000; ``text`` is cut to 20 characters.
    """
    if dlvrd is None:
        dlvrd = "001" if state == "DELIVRD" else "000"
    line = (
        f"id:{message_id} sub:{sub} dlvrd:{dlvrd} "
        f"submit date:{submit_date:%y%m%d%H%M} done date:{done_date:%y%m%d%H%M} "
        f"stat:{state} err:{err} text:{text[:20]}"
    )
    return line.encode("ascii", "replace")
