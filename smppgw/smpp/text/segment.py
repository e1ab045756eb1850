"""Outbound segmentation: one text → the short_message / TLV payloads of its submit_sm PDUs.

* Part sizes follow the packed air-interface budget even though GSM goes out unpacked: 160
  septets alone, 153 beside an 8-bit UDH (6 octets = 7 septets with fill), 152 beside a
  16-bit UDH; 140 / 134 / 132 octets for Latin-1 and UCS2.
* SAR parts (``sar_*`` TLVs, no UDH) are sized like UDH8 parts (153 septets / 134 octets):
  many SMSCs turn SAR into a UDH on the air interface, and that UDH needs the room.
* ``payload`` puts the whole text in one ``message_payload`` TLV and lets the SMSC split it.
  ``max_parts`` still applies, counted as the UDH8 parts the SMSC will bill.
* A text that fits one SMS is always sent as one plain part, whatever the concat mode:
  a single part needs no concatenation info, and every SMSC accepts it.
* A part never ends between an ESC and its character, inside a UTF-16 surrogate pair, or
  inside a grapheme cluster (:mod:`smppgw.smpp.text.graphemes`); only a cluster longer
  than a whole part is cut, and then at a code-point boundary.
"""

from __future__ import annotations

import time
import unicodedata
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise

from smppgw.smpp.constants import ESM_UDHI, Tag
from smppgw.smpp.text.coding import DATA_CODING, DC_GSM, Coding, TextError, encode
from smppgw.smpp.text.graphemes import is_boundary
from smppgw.smpp.text.gsm7 import find_non_ascii_septet
from smppgw.smpp.text.ucs2 import char_offsets


class Concat(StrEnum):
    UDH8 = "udh8"
    UDH16 = "udh16"
    SAR = "sar"
    PAYLOAD = "payload"


@dataclass(frozen=True, slots=True)
class Part:
    """One submit_sm worth of text.

    ``udh`` is the whole User Data Header as prepended to ``short_message`` (its length
    octet included); ``tlvs`` are ready to extend ``Pdu.tlvs`` with.
    """

    data_coding: int
    esm_class: int
    short_message: bytes
    udh: bytes | None
    sar: tuple[int, int, int] | None
    tlvs: tuple[tuple[int, bytes], ...]


# (alone, beside UDH8 / SAR / payload, beside UDH16) in the coding's units (octets).
_GSM_SIZES = (160, 153, 152)
_OCTET_SIZES = (140, 134, 132)


def _byte_cuts(data: bytes, cap: int, escapes: bool) -> list[int]:
    """Cut points in an octet-per-character encoding (GSM unpacked, Latin-1)."""
    cuts = [0]
    start, total = 0, len(data)
    while start < total:
        end = start + cap
        if end >= total:
            end = total
        elif escapes and data[end - 1] == 0x1B:
            end -= 1  # ESC always prefixes a character; 0x1B is never an escaped septet
        elif data[end - 1] == 0x0D and data[end] == 0x0A and end - 1 > start:
            end -= 1  # keep CR LF together
        cuts.append(end)
        start = end
    return cuts


def _cluster_fits(text: str, offsets: list[int], first: int, cut: int, cap: int) -> bool:
    """Does the cluster starting at ``first`` (and running past ``cut``) fit in one part?"""
    n = len(text)
    j = cut
    while j < n and offsets[j + 1] - offsets[first] <= cap:
        j += 1
        if j == n or is_boundary(text, j):
            return True
    return False


def _char_cuts(text: str, offsets: list[int], cap: int) -> list[int]:
    """Cut points (character indexes) given each character's starting octet offset."""
    n = len(text)
    cuts = [0]
    start = 0
    while start < n:
        limit = offsets[start] + cap
        if offsets[n] <= limit:
            end = n
        else:
            end = bisect_right(offsets, limit) - 1
            back = end
            while back > start and not is_boundary(text, back):
                back -= 1
            if back == end or (back > start and _cluster_fits(text, offsets, back, end, cap)):
                end = back
            # else: the cluster across the cut is longer than a part; cut at the code point
        cuts.append(end)
        start = end
    return cuts


def _ucs2_parts(text: str, data: bytes, cap: int) -> list[bytes]:
    offsets = char_offsets(text, data)
    cuts = _char_cuts(text, offsets, cap)
    return [data[offsets[a] : offsets[b]] for a, b in pairwise(cuts)]


def split(
    text: str,
    *,
    coding: Coding | str = "auto",
    concat: Concat | str = "udh8",
    ref: int = 0,
    max_parts: int = 10,
) -> list[Part]:
    """Encode ``text`` (NFC first) and cut it into the parts of one SMS.

    ``ref`` is the concatenation reference (take it from :class:`RefCounter`); it is masked
    to 8 bits for UDH8 and 16 bits for UDH16 and SAR.
    """
    if type(coding) is not Coding or type(concat) is not Concat:  # enum calls cost per job
        try:
            coding = Coding(coding)
            concat = Concat(concat)
        except ValueError as exc:
            raise TextError(str(exc)) from None
    # Hot path: short text of characters whose GSM septet is their ASCII code.
    if (
        len(text) <= 160
        and coding in (Coding.AUTO, Coding.GSM)
        and text.isascii()
        and find_non_ascii_septet(text) is None
    ):
        return [Part(DC_GSM, 0, text.encode("ascii"), None, None, ())]

    text = unicodedata.normalize("NFC", text)
    used, data = encode(text, coding)
    dc = DATA_CODING[used]
    sizes = _GSM_SIZES if used is Coding.GSM else _OCTET_SIZES
    if len(data) <= sizes[0]:
        return [Part(dc, 0, data, None, None, ())]

    cap = sizes[2] if concat is Concat.UDH16 else sizes[1]
    if used is Coding.UCS2:
        chunks = _ucs2_parts(text, data, cap)
    else:
        cuts = _byte_cuts(data, cap, escapes=used is Coding.GSM)
        chunks = [data[a:b] for a, b in pairwise(cuts)]
    total = len(chunks)
    limit = min(max_parts, 255)
    if total > limit:
        raise TextError(f"text of {len(text)} characters needs {total} parts, max {limit}")

    if concat is Concat.PAYLOAD:
        return [Part(dc, 0, b"", None, None, ((Tag.MESSAGE_PAYLOAD, data),))]
    parts: list[Part] = []
    if concat is Concat.SAR:
        ref16 = (ref & 0xFFFF).to_bytes(2, "big")
        total_b = bytes((total,))
        for seq, chunk in enumerate(chunks, 1):
            tlvs = (
                (Tag.SAR_MSG_REF_NUM, ref16),
                (Tag.SAR_TOTAL_SEGMENTS, total_b),
                (Tag.SAR_SEGMENT_SEQNUM, bytes((seq,))),
            )
            parts.append(Part(dc, 0, chunk, None, (ref & 0xFFFF, total, seq), tlvs))
        return parts
    if concat is Concat.UDH8:
        head = bytes((5, 0x00, 3, ref & 0xFF, total))
    else:
        head = bytes((6, 0x08, 4, (ref >> 8) & 0xFF, ref & 0xFF, total))
    for seq, chunk in enumerate(chunks, 1):
        udh = head + bytes((seq,))
        parts.append(Part(dc, ESM_UDHI, udh + chunk, udh, None, ()))
    return parts


class RefCounter:
    """Concatenation refs per destination: consecutive messages to one number never share one.

    Refs increment per destination and wrap at 2**bits. A destination seen for the first
    time starts from a process-wide rolling value (seeded from the clock unless ``start`` is
    given), so a restart does not reuse the refs the last run just sent. Memory is bounded:
    the least recently used destinations are forgotten beyond ``max_destinations``.
    """

    def __init__(
        self, bits: int = 8, *, start: int | None = None, max_destinations: int = 100_000
    ) -> None:
        if bits not in (8, 16):
            raise ValueError("bits must be 8 or 16")
        self.bits = bits
        self._mask = (1 << bits) - 1
        self._seed = (int(time.time()) if start is None else start) & self._mask
        self._max = max_destinations
        self._last: OrderedDict[str, int] = OrderedDict()

    def next(self, destination: str) -> int:
        last = self._last.get(destination)
        if last is None:
            ref = self._seed
            self._seed = (self._seed + 1) & self._mask
            if len(self._last) >= self._max:
                self._last.popitem(last=False)
        else:
            ref = (last + 1) & self._mask
            self._last.move_to_end(destination)
        self._last[destination] = ref
        return ref
