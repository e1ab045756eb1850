"""Text ⇄ SMS parts: GSM 03.38 / Latin-1 / UCS2 encoding, segmentation and MO decoding.

Outbound, :func:`split` turns one job's text into the ``short_message`` / TLV payloads of
its submit_sm PDUs. Inbound, :func:`decode_mo` turns one deliver_sm into text plus its
concatenation info, and :class:`Reassembler` joins concatenated MO.

Choices a reader might not expect:

* GSM text is sent **unpacked** (one octet per septet, data_coding 0), the SMPP norm. Part
  sizes still follow the packed air-interface budget: 160 septets alone, 153 beside an 8-bit
  UDH (6 octets = 7 septets with fill), 152 beside a 16-bit UDH.
* ``auto`` chooses GSM when every character is in the GSM default alphabet or its extension
  table, else UCS2. It never silently picks Latin-1 (many handsets render data_coding 3
  badly); a carrier that wants Latin-1 forces it.
* SAR parts (``sar_*`` TLVs, no UDH) are sized like UDH8 parts (153 septets / 134 octets):
  many SMSCs turn SAR into a UDH on the air interface, and that UDH needs the room.
* ``payload`` puts the whole text in one ``message_payload`` TLV and lets the SMSC split it.
  ``max_parts`` still applies, counted as the UDH8 parts the SMSC will bill.
* A text that fits one SMS is always sent as one plain part, whatever the concat mode:
  a single part needs no concatenation info, and every SMSC accepts it.
* A part never ends between an ESC and its character, inside a UTF-16 surrogate pair, or
  inside a grapheme cluster (combining marks, emoji modifier / ZWJ / flag / keycap / tag
  sequences, Hangul syllables, CR LF); only a cluster longer than a whole part is cut, and
  then at a code-point boundary. The cluster rules are UAX #29 simplified in the safe
  direction: where unsure they keep characters together.
"""

from __future__ import annotations

import re
import time
import unicodedata
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import accumulate, pairwise

from smppgw.smpp.constants import ESM_UDHI, Tag

__all__ = [
    "DC_GSM",
    "DC_IA5",
    "DC_LATIN1",
    "DC_UCS2",
    "GSM_BASIC",
    "GSM_EXTENSION",
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

DC_GSM = 0x00
DC_IA5 = 0x01
DC_LATIN1 = 0x03
DC_UCS2 = 0x08

#: Marks each missing part in a partial (timed-out) reassembled MO text.
MISSING_PART = "…"


class Coding(StrEnum):
    AUTO = "auto"
    GSM = "gsm"
    LATIN1 = "latin1"
    UCS2 = "ucs2"


class Concat(StrEnum):
    UDH8 = "udh8"
    UDH16 = "udh16"
    SAR = "sar"
    PAYLOAD = "payload"


class TextError(ValueError):
    """The text cannot be sent as asked: too many parts, or unencodable in a forced coding."""


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


# --------------------------------------------------------------------------- GSM 03.38

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

_ESC = "\x1b"
_GSM_ENCODE: dict[int, str] = {ord(ch): chr(i) for i, ch in enumerate(GSM_BASIC) if ch != _ESC}
_GSM_ENCODE.update({ord(ch): _ESC + chr(code) for code, ch in GSM_EXTENSION.items()})
_GSM_CHARS = "".join(chr(c) for c in _GSM_ENCODE)
_NOT_GSM = re.compile("[^" + "".join(re.escape(c) for c in _GSM_CHARS) + "]")
# Characters whose GSM septet equals their ASCII code: texts made only of these (most OTPs
# and order notices) are encoded with str.encode alone.
_GSM_SAME_AS_ASCII = "".join(
    ch for i, ch in enumerate(GSM_BASIC) if ch != _ESC and ord(ch) == i and ord(ch) < 0x80
)
_NOT_GSM_SAME_AS_ASCII = re.compile("[^" + "".join(re.escape(c) for c in _GSM_SAME_AS_ASCII) + "]")

# Decoding runs on the latin-1 view of the octets: septets 0x00-0x7F map to the basic table
# (ESC kept), octets 0x80-0xFF (not valid unpacked GSM) are kept as Latin-1.
_GSM_DECODE = {i: ch for i, ch in enumerate(GSM_BASIC)}
# After that translation the septet following an ESC has become its basic-table character.
_GSM_EXT_BY_BASIC = {GSM_BASIC[code]: ch for code, ch in GSM_EXTENSION.items()}
_ESC_SEQ = re.compile("\x1b(.?)", re.S)


def _esc_sub(match: re.Match[str]) -> str:
    follower = match.group(1)
    if not follower:  # ESC as the last septet: nothing to show
        return ""
    if follower == _ESC:  # ESC ESC: reserved for another extension table; show a space
        return " "
    # An unknown escape shows the basic character (23.038 §6.2.1.1).
    return _GSM_EXT_BY_BASIC.get(follower, follower)


def _gsm_decode(data: bytes) -> str:
    text = data.decode("latin-1").translate(_GSM_DECODE)
    if _ESC in text:
        text = _ESC_SEQ.sub(_esc_sub, text)
    return text


def _gsm_encode(text: str) -> bytes:
    """Encode text already known to be GSM-representable, one octet per septet."""
    if _NOT_GSM_SAME_AS_ASCII.search(text) is None:
        return text.encode("ascii")
    return text.translate(_GSM_ENCODE).encode("latin-1")


def _unencodable(ch: str, coding: str) -> TextError:
    return TextError(f"character {ch!r} (U+{ord(ch):04X}) cannot be encoded in {coding}")


# --------------------------------------------------------------------------- grapheme clusters

_ZWJ = "\u200d"
_PREPEND = frozenset(
    [*range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2, 0x110BD, 0x110CD]
)


def _is_extend(o: int, cat: str) -> bool:
    return (
        cat in ("Mn", "Me", "Mc")  # Mc: SpacingMark (GB9a) or Extend; both join
        or o == 0x200C
        or o == 0x200D
        or 0x1F3FB <= o <= 0x1F3FF  # emoji skin-tone modifiers
        or 0xE0020 <= o <= 0xE007F  # tag characters (subdivision flags)
        or o in (0xFF9E, 0xFF9F, 0x0E33, 0x0EB3)
    )


def _is_control(o: int, cat: str) -> bool:
    if cat in ("Cc", "Zl", "Zp"):
        return True
    if cat != "Cf":
        return False
    return o not in _PREPEND and o not in (0x200C, 0x200D) and not 0xE0020 <= o <= 0xE007F


def _hangul(o: int) -> str:
    if 0xAC00 <= o <= 0xD7A3:
        return "LV" if (o - 0xAC00) % 28 == 0 else "LVT"
    if 0x1100 <= o <= 0x115F or 0xA960 <= o <= 0xA97C:
        return "L"
    if 0x1160 <= o <= 0x11A7 or 0xD7B0 <= o <= 0xD7C6:
        return "V"
    if 0x11A8 <= o <= 0x11FF or 0xD7CB <= o <= 0xD7FB:
        return "T"
    return ""


def _is_ri(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _is_boundary(text: str, i: int) -> bool:
    """May a part end between ``text[i-1]`` and ``text[i]``? (0 < i < len(text))"""
    a, b = text[i - 1], text[i]
    if a == "\r":
        return b != "\n"
    oa, ob = ord(a), ord(b)
    if oa < 0x300 and ob < 0x300:  # nothing below U+0300 extends or joins (but CR LF)
        return True
    cat_a, cat_b = unicodedata.category(a), unicodedata.category(b)
    if _is_control(oa, cat_a) or _is_control(ob, cat_b):
        return True
    if _is_extend(ob, cat_b) or oa in _PREPEND:
        return False
    if a == _ZWJ:  # GB11, simplified: never end a part right after a ZWJ
        return False
    ha, hb = _hangul(oa), _hangul(ob)
    if ha and hb:
        if ha == "L" and hb in ("L", "V", "LV", "LVT"):
            return False
        if ha in ("LV", "V") and hb in ("V", "T"):
            return False
        if ha in ("LVT", "T") and hb == "T":
            return False
    if _is_ri(a) and _is_ri(b):
        j = i - 1
        while j >= 0 and _is_ri(text[j]):
            j -= 1
        return (i - 1 - j) % 2 == 0
    if cat_b.startswith("L"):
        # GB9c, simplified: consonant + virama (+ extenders) + consonant is one cluster.
        j = i - 1
        while j >= 0:
            o = ord(text[j])
            if unicodedata.combining(text[j]) == 9:
                return False
            if not _is_extend(o, unicodedata.category(text[j])):
                break
            j -= 1
    return True


# --------------------------------------------------------------------------- segmentation

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
        if j == n or _is_boundary(text, j):
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
            while back > start and not _is_boundary(text, back):
                back -= 1
            if back == end or (back > start and _cluster_fits(text, offsets, back, end, cap)):
                end = back
            # else: the cluster across the cut is longer than a part; cut at the code point
        cuts.append(end)
        start = end
    return cuts


def _ucs2_parts(text: str, data: bytes, cap: int) -> list[bytes]:
    if len(data) == 2 * len(text):  # all BMP: character i starts at octet 2i
        offsets = list(range(0, len(data) + 1, 2))
    else:
        offsets = [0, *accumulate(4 if ch > "\uffff" else 2 for ch in text)]
    cuts = _char_cuts(text, offsets, cap)
    return [data[offsets[a] : offsets[b]] for a, b in pairwise(cuts)]


def _encode(text: str, coding: Coding) -> tuple[Coding, bytes]:
    if coding is Coding.AUTO or coding is Coding.GSM:
        bad = _NOT_GSM.search(text)
        if bad is None:
            return Coding.GSM, _gsm_encode(text)
        if coding is Coding.GSM:
            raise _unencodable(bad.group(), "GSM 03.38")
        coding = Coding.UCS2
    try:
        if coding is Coding.LATIN1:
            return coding, text.encode("latin-1")
        return coding, text.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        name = "Latin-1" if coding is Coding.LATIN1 else "UCS2"
        raise _unencodable(exc.object[exc.start], name) from None


_DATA_CODING = {Coding.GSM: DC_GSM, Coding.LATIN1: DC_LATIN1, Coding.UCS2: DC_UCS2}


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
        and _NOT_GSM_SAME_AS_ASCII.search(text) is None
    ):
        return [Part(DC_GSM, 0, text.encode("ascii"), None, None, ())]

    text = unicodedata.normalize("NFC", text)
    used, data = _encode(text, coding)
    dc = _DATA_CODING[used]
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


# --------------------------------------------------------------------------- MO decoding

# data_coding values with a Python codec (SMPP 3.4 §5.2.19); decoded with errors="replace".
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


def _clean(text: str) -> str:
    """Join surrogate halves that ended up in separate parts; replace lone ones."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")
    return text


def _decode(data: bytes, data_coding: int) -> str:
    """Decode without cleaning: UCS2 keeps lone surrogates so split pairs can be rejoined."""
    alphabet = _alphabet(data_coding)
    if alphabet == "gsm":
        return _gsm_decode(data)
    if alphabet == "ucs2":
        if len(data) % 2:
            data += b"\x00"  # odd length: the stray octet becomes U+XX00 rather than vanish
        return data.decode("utf-16-be", "surrogatepass")
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
    return _clean(_decode(data, data_coding))


@dataclass(frozen=True, slots=True)
class MoPart:
    """One deliver_sm's text and its (ref, total, seq) when it is part of a longer message.

    A concatenated part's UCS2 text may end or start with half a surrogate pair (handsets do
    split them); :class:`Reassembler` rejoins them. Unconcatenated text is always clean.
    ``size`` is the user data's length in octets as received (UDH excluded); 0 when not
    known, and then the text's length stands in for it.
    """

    text: str
    concat: tuple[int, int, int] | None
    size: int = field(default=0, compare=False)


def _parse_udh(udh: bytes) -> tuple[int, int, int] | None:
    pos = 0
    found: tuple[int, int, int] | None = None
    while pos + 2 <= len(udh):
        iei, length = udh[pos], udh[pos + 1]
        value = udh[pos + 2 : pos + 2 + length]
        if len(value) < length:
            break
        if iei == 0x00 and length == 3:
            found = (value[0], value[1], value[2])
        elif iei == 0x08 and length == 4:
            found = ((value[0] << 8) | value[1], value[2], value[3])
        pos += 2 + length
    return found


def _sar(tlvs: list[tuple[int, bytes]]) -> tuple[int, int, int] | None:
    ref = total = seq = None
    for tag, value in tlvs:
        if not value:
            continue
        if tag == Tag.SAR_MSG_REF_NUM:
            ref = int.from_bytes(value[:2], "big")
        elif tag == Tag.SAR_TOTAL_SEGMENTS:
            total = value[-1]
        elif tag == Tag.SAR_SEGMENT_SEQNUM:
            seq = value[-1]
    if ref is None or total is None or seq is None:
        return None
    return (ref, total, seq)


def decode_mo(
    short_message: bytes, data_coding: int, esm_class: int, tlvs: list[tuple[int, bytes]]
) -> MoPart:
    """Text and concatenation info of one inbound deliver_sm / data_sm; never raises.

    The body is ``short_message``, or the message_payload TLV when short_message is empty.
    With UDHI set the UDH is stripped and its concatenation IE (0x00 or 0x08) read; else SAR
    TLVs give it. Concatenation info that makes no sense (total < 2, seq outside 1..total)
    is dropped and the part delivered as a message of its own.
    """
    data = short_message
    if not data:
        for tag, value in tlvs:
            if tag == Tag.MESSAGE_PAYLOAD:
                data = value
                break
    concat: tuple[int, int, int] | None = None
    if esm_class & ESM_UDHI and data:
        udhl = data[0]
        if 1 + udhl <= len(data):
            concat = _parse_udh(data[1 : 1 + udhl])
            data = data[1 + udhl :]
    if concat is None:
        concat = _sar(tlvs)
    if concat is not None and not (concat[1] >= 2 and 1 <= concat[2] <= concat[1]):
        concat = None
    text = _decode(data, data_coding)
    return MoPart(text if concat is not None else _clean(text), concat, len(data))


#: Largest concatenated MO part held for reassembly, in octets of user data. One SMS part
#: carries at most 140 octets on the air (short_message at most 254); message_payload could
#: carry 64 KB, which no part of a real concatenated SMS needs. Larger parts are refused.
MO_MAX_PART_OCTETS = 1600
#: Octets of MO parts held per carrier (incomplete messages, and those delivered partial
#: early that the carrier has not taken yet): about 7,000 parts of 140 octets.
MO_MAX_PENDING_OCTETS = 1 << 20


class MoRefused(Exception):
    """A concatenated MO part the reassembler will not hold.

    ``reason`` is ``too_large`` (the part alone exceeds ``max_part``: it is malformed and
    never will fit) or ``busy`` (no room now even after evicting older messages: the SMSC
    should deliver it again later).
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(slots=True)
class _Pending:
    created: float
    total: int
    #: seq → (text, octets)
    parts: dict[int, tuple[str, int]] = field(default_factory=dict)
    size: int = 0

    def text(self) -> str:
        missing = (MISSING_PART, 0)
        return _clean("".join(self.parts.get(seq, missing)[0] for seq in range(1, self.total + 1)))


class Reassembler:
    """Joins concatenated MO parts; a message whose parts stop coming is delivered partial.

    Messages are keyed by the caller's key (e.g. (source, destination)) plus the part's ref
    and total. :meth:`expire` returns messages older than ``timeout`` (counted from their
    first part) with every missing part shown as ``…``, so nothing a subscriber sent is
    dropped.

    Memory is bounded by count and by octets, because the SMSC (or whoever controls it)
    chooses how many parts arrive and how big they are. A part over ``max_part`` octets is
    refused (:class:`MoRefused` ``too_large``). Beyond ``max_pending`` incomplete messages,
    or ``max_bytes`` octets of incomplete messages, the oldest are evicted: handed to
    :meth:`expire` early as partial texts (counted in ``evicted``). Evicted texts waiting
    for :meth:`expire` are bounded by ``max_bytes`` too; when that is full (the caller does
    not keep up) a part is refused with ``busy`` instead of held. So at most twice
    ``max_bytes`` octets of parts are held.
    """

    def __init__(
        self,
        timeout: float = 300.0,
        *,
        max_pending: int = 10_000,
        max_part: int = MO_MAX_PART_OCTETS,
        max_bytes: int = MO_MAX_PENDING_OCTETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self._max = max_pending
        self.max_part = max_part
        self.max_bytes = max_bytes
        self._clock = clock
        self._pending: dict[tuple[tuple[str, str], int, int], _Pending] = {}
        self._pending_bytes = 0
        self._evicted: list[tuple[tuple[str, str], str, int]] = []
        self._evicted_bytes = 0
        #: Incomplete messages evicted early (delivered partial) to stay within the bounds.
        self.evicted = 0

    def __len__(self) -> int:
        """Incomplete messages held."""
        return len(self._pending)

    @property
    def bytes(self) -> int:
        """Octets of parts held: incomplete messages and evicted ones not yet expired."""
        return self._pending_bytes + self._evicted_bytes

    @property
    def has_evicted(self) -> bool:
        """Evicted messages are waiting for :meth:`expire` (call it soon: they hold room)."""
        return bool(self._evicted)

    def add(self, key: tuple[str, str], part: MoPart) -> str | None:
        """Return the whole text when ``part`` completes its message (or is not a part).

        Raises :class:`MoRefused` for a part it will not hold (nothing is kept then).
        """
        if part.concat is None:
            return _clean(part.text)
        ref, total, seq = part.concat
        if total < 2 or not 1 <= seq <= total:
            return _clean(part.text)
        size = part.size or len(part.text)
        if size > self.max_part:
            raise MoRefused(
                "too_large", f"MO part of {size} octets, at most {self.max_part} in a part"
            )
        slot = (key, ref, total)
        pending = self._pending.get(slot)
        replaced = pending.parts[seq][1] if pending is not None and seq in pending.parts else 0
        growth = size - replaced
        while self._pending_bytes + growth > self.max_bytes and self._evict(keep=slot):
            pass
        if self._pending_bytes + growth > self.max_bytes:
            raise MoRefused(
                "busy",
                f"MO reassembly holds {self.bytes} octets, at most {2 * self.max_bytes}",
            )
        if pending is None:
            if len(self._pending) >= self._max and not self._evict(keep=slot):
                raise MoRefused("busy", f"{len(self._pending)} incomplete MO messages held")
            pending = self._pending[slot] = _Pending(self._clock(), total)
        pending.parts[seq] = (part.text, size)  # a repeated part replaces the earlier copy
        pending.size += growth
        self._pending_bytes += growth
        if len(pending.parts) == total:
            del self._pending[slot]
            self._pending_bytes -= pending.size
            return pending.text()
        return None

    def _evict(self, keep: tuple[tuple[str, str], int, int]) -> bool:
        """Move the oldest incomplete message (not ``keep``) to the evicted list, if there
        is room there for it."""
        for slot, old in self._pending.items():
            if slot == keep:
                continue
            if self._evicted_bytes + old.size > self.max_bytes:
                return False
            del self._pending[slot]
            self._pending_bytes -= old.size
            self._evicted.append((slot[0], old.text(), old.size))
            self._evicted_bytes += old.size
            self.evicted += 1
            return True
        return False

    def expire(self) -> list[tuple[tuple[str, str], str]]:
        """Remove and return (key, partial text) of every message evicted since the last
        call and of every message past its timeout."""
        out = [(key, text) for key, text, _size in self._evicted]
        self._evicted, self._evicted_bytes = [], 0
        deadline = self._clock() - self.timeout
        # Insertion order is creation order, so the expired ones are a prefix.
        while self._pending:
            slot = next(iter(self._pending))
            if self._pending[slot].created > deadline:
                break
            old = self._pending.pop(slot)
            self._pending_bytes -= old.size
            out.append((slot[0], old.text()))
        return out
