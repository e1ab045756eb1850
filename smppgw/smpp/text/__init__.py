"""SMS text ⇄ SMPP parts: the text library's public API.

Outbound, :func:`split` turns one job's text into the ``short_message`` / TLV payloads of
its submit_sm PDUs. Inbound, :func:`decode_mo` turns one deliver_sm into text plus its
concatenation info, and :class:`Reassembler` joins concatenated MO.

One module per concept; import from here unless you need a module's internals:

* :mod:`.gsm7` — the GSM 03.38 tables; GSM text one octet per septet (unpacked).
* :mod:`.ucs2` — UTF-16 with surrogate pairs a handset may split across parts.
* :mod:`.coding` — data_coding values, choosing and applying a coding, decoding any of them.
* :mod:`.graphemes` — where a part may end (grapheme cluster boundaries).
* :mod:`.segment` — :func:`split` into parts (UDH8, UDH16, SAR, payload) and :class:`RefCounter`.
* :mod:`.mo` — :func:`decode_mo`: one inbound PDU's text and concatenation info.
* :mod:`.reassembly` — :class:`Reassembler`: bounded joining of concatenated MO.
"""

from __future__ import annotations

from smppgw.smpp.text.coding import (
    DC_GSM,
    DC_IA5,
    DC_LATIN1,
    DC_UCS2,
    Coding,
    TextError,
    decode_text,
)
from smppgw.smpp.text.gsm7 import GSM_BASIC, GSM_EXTENSION
from smppgw.smpp.text.mo import MoPart, decode_mo
from smppgw.smpp.text.reassembly import MISSING_PART, MoRefused, Reassembler
from smppgw.smpp.text.segment import Concat, Part, RefCounter, split

__all__ = [
    "DC_GSM",
    "DC_IA5",
    "DC_LATIN1",
    "DC_UCS2",
    "GSM_BASIC",
    "GSM_EXTENSION",
    "MISSING_PART",
    "Coding",
    "Concat",
    "MoPart",
    "MoRefused",
    "Part",
    "Reassembler",
    "RefCounter",
    "TextError",
    "decode_mo",
    "decode_text",
    "split",
]
