"""Data codings: which alphabet a data_coding octet means, and text ⇄ octets in it.

Outbound, ``auto`` chooses GSM when every character is in the GSM default alphabet or its
extension table, else UCS2. It never silently picks Latin-1 (many handsets render
data_coding 3 badly); a carrier that wants Latin-1 forces it. Inbound, every data_coding
decodes to some text and decoding never raises.
"""

from __future__ import annotations

from enum import StrEnum

from smppgw.smpp.text.gsm7 import find_non_gsm, gsm_decode, gsm_encode
from smppgw.smpp.text.ucs2 import clean, decode_ucs2, encode_ucs2

DC_GSM = 0x00
DC_IA5 = 0x01
DC_LATIN1 = 0x03
DC_UCS2 = 0x08


class Coding(StrEnum):
    AUTO = "auto"
    GSM = "gsm"
    LATIN1 = "latin1"
    UCS2 = "ucs2"


class TextError(ValueError):
    """The text cannot be sent as asked: too many parts, or unencodable in a forced coding."""


def _unencodable(ch: str, coding: str) -> TextError:
    return TextError(f"character {ch!r} (U+{ord(ch):04X}) cannot be encoded in {coding}")


def encode(text: str, coding: Coding) -> tuple[Coding, bytes]:
    """``text`` in ``coding`` (AUTO resolved), or :class:`TextError` naming the character."""
    if coding is Coding.AUTO or coding is Coding.GSM:
        bad = find_non_gsm(text)
        if bad is None:
            return Coding.GSM, gsm_encode(text)
        if coding is Coding.GSM:
            raise _unencodable(bad.group(), "GSM 03.38")
        coding = Coding.UCS2
    try:
        if coding is Coding.LATIN1:
            return coding, text.encode("latin-1")
        return coding, encode_ucs2(text)
    except UnicodeEncodeError as exc:
        name = "Latin-1" if coding is Coding.LATIN1 else "UCS2"
        raise _unencodable(exc.object[exc.start], name) from None


DATA_CODING = {Coding.GSM: DC_GSM, Coding.LATIN1: DC_LATIN1, Coding.UCS2: DC_UCS2}


#: data_coding values with a Python codec (SMPP 3.4 §5.2.19); decoded with errors="replace".
_DC_CODECS = {
    0x05: "shift_jis",  # JIS X 0208; SMSCs send it as Shift-JIS in practice
    0x06: "iso8859_5",
    0x07: "iso8859_8",
    0x0A: "iso2022_jp",
    0x0D: "euc_jis_2004",
    0x0E: "euc_kr",  # KS C 5601
}


def _alphabet(data_coding: int) -> str:
    """Map a data_coding octet to "gsm", "latin1", "ascii", "ucs2", "binary" or a codec."""
    if data_coding == 0x00:
        return "gsm"
    if data_coding == 0x01:
        return "ascii"
    if data_coding == 0x03:
        return "latin1"
    if data_coding == 0x08:
        return "ucs2"
    if data_coding in (0x02, 0x04):
        return "binary"
    if data_coding in _DC_CODECS:
        return _DC_CODECS[data_coding]
    if data_coding < 0x10:  # other SMPP-defined values (pictogram, music codes, ...)
        return "latin1"
    group = data_coding & 0xF0
    if group <= 0x70:  # general data coding (0x40-0x7F: auto-deletion): bits 3-2 = alphabet
        if data_coding & 0x20:  # compressed: we cannot inflate it; keep the octets
            return "binary"
        return ("gsm", "binary", "ucs2", "binary")[(data_coding >> 2) & 0x03]
    if group in (0xC0, 0xD0):  # message waiting indication, GSM text
        return "gsm"
    if group == 0xE0:  # message waiting indication, UCS2 text
        return "ucs2"
    if group == 0xF0:  # data coding / message class
        return "binary" if data_coding & 0x04 else "gsm"
    return "latin1"


def decode_raw(data: bytes, data_coding: int) -> str:
    """Decode without cleaning: UCS2 keeps lone surrogates so split pairs can be rejoined."""
    alphabet = _alphabet(data_coding)
    if alphabet == "gsm":
        return gsm_decode(data)
    if alphabet == "ucs2":
        return decode_ucs2(data)
    if alphabet in ("latin1", "ascii", "binary"):
        # IA5 octets above 0x7F and 8-bit binary data: Latin-1 keeps every octet, one
        # character each, so a consumer can recover the bytes with .encode("latin-1").
        return data.decode("latin-1")
    return data.decode(alphabet, "replace")


def decode_text(data: bytes, data_coding: int) -> str:
    """Decode a short_message body (no UDH) in any data_coding; never raises.

    0 GSM unpacked (octets above 0x7F kept as Latin-1), 1 IA5/ASCII, 3 Latin-1, 8 UCS2 with
    surrogate pairs (lone halves → U+FFFD), 2 and 4 (8-bit binary) as Latin-1 characters,
    others per the data coding scheme groups or their national codec.
    """
    return clean(decode_raw(data, data_coding))
