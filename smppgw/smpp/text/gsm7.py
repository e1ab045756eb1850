"""GSM 03.38 (3GPP TS 23.038) default alphabet and extension table, one octet per septet.

SMPP carries GSM text **unpacked** (data_coding 0: one octet per septet, the SMPP norm); the
SMSC packs it for the air interface. Characters of the extension table go out as ESC + septet.
Decoding runs on the Latin-1 view of the octets, so octets above 0x7F (not valid unpacked
GSM) are kept as Latin-1 rather than lost.
"""

from __future__ import annotations

import re

#: 3GPP TS 23.038 default alphabet, indexed by septet; 0x1B (ESC) is a placeholder.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
#: The extension table (each sent as ESC + septet).
GSM_EXTENSION: dict[int, str] = {
    0x0A: "\x0c",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
assert len(GSM_BASIC) == 128

#: The escape to the extension table.
ESC = "\x1b"
_GSM_ENCODE: dict[int, str] = {ord(ch): chr(i) for i, ch in enumerate(GSM_BASIC) if ch != ESC}
_GSM_ENCODE.update({ord(ch): ESC + chr(code) for code, ch in GSM_EXTENSION.items()})
_GSM_CHARS = "".join(chr(c) for c in _GSM_ENCODE)
_NOT_GSM = re.compile("[^" + "".join(re.escape(c) for c in _GSM_CHARS) + "]")
# Characters whose GSM septet equals their ASCII code: texts made only of these (most OTPs
# and order notices) are encoded with str.encode alone.
_GSM_SAME_AS_ASCII = "".join(
    ch for i, ch in enumerate(GSM_BASIC) if ch != ESC and ord(ch) == i and ord(ch) < 0x80
)
_NOT_GSM_SAME_AS_ASCII = re.compile("[^" + "".join(re.escape(c) for c in _GSM_SAME_AS_ASCII) + "]")

# Decoding runs on the latin-1 view of the octets: septets 0x00-0x7F map to the basic table
# (ESC kept), octets 0x80-0xFF (not valid unpacked GSM) are kept as Latin-1.
# Bound methods, so that callers in other modules call them at full speed (CPython 3.11 calls
# ``imported.attr()`` without its method fast path).
#: The first character GSM 03.38 (basic or extension table) cannot represent, as a
#: ``re.Match``, or None.
find_non_gsm = _NOT_GSM.search
#: The first character whose GSM septet is not its ASCII code, or None: a text without one
#: is encoded with ``str.encode("ascii")`` alone.
find_non_ascii_septet = _NOT_GSM_SAME_AS_ASCII.search

_GSM_DECODE = {i: ch for i, ch in enumerate(GSM_BASIC)}
# After that translation the septet following an ESC has become its basic-table character.
_GSM_EXT_BY_BASIC = {GSM_BASIC[code]: ch for code, ch in GSM_EXTENSION.items()}
_ESC_SEQ = re.compile("\x1b(.?)", re.S)


def _esc_sub(match: re.Match[str]) -> str:
    follower = match.group(1)
    if not follower:  # ESC as the last septet: nothing to show
        return ""
    if follower == ESC:  # ESC ESC: reserved for another extension table; show a space
        return " "
    # An unknown escape shows the basic character (23.038 §6.2.1.1).
    return _GSM_EXT_BY_BASIC.get(follower, follower)


def gsm_decode(data: bytes) -> str:
    """Unpacked GSM octets as text; never raises (unknown escapes show the basic character)."""
    text = data.decode("latin-1").translate(_GSM_DECODE)
    if ESC in text:
        text = _ESC_SEQ.sub(_esc_sub, text)
    return text


def gsm_encode(text: str) -> bytes:
    """Encode text already known to be GSM-representable, one octet per septet."""
    if _NOT_GSM_SAME_AS_ASCII.search(text) is None:
        return text.encode("ascii")
    return text.translate(_GSM_ENCODE).encode("latin-1")
