"""UCS2 as SMS handsets use it: UTF-16BE with surrogate pairs, whose halves may be split.

A concatenating handset may put the two halves of a surrogate pair (an emoji) in different
parts, so part texts are decoded keeping lone surrogates (:func:`decode_ucs2`) and cleaned
once the message is whole (:func:`clean`).
"""

from __future__ import annotations

from itertools import accumulate


def encode_ucs2(text: str) -> bytes:
    """UTF-16BE; raises UnicodeEncodeError for a lone surrogate in ``text``."""
    return text.encode("utf-16-be")


def decode_ucs2(data: bytes) -> str:
    """Decode keeping lone surrogates, so a pair split across parts can be rejoined."""
    if len(data) % 2:
        data += b"\x00"  # odd length: the stray octet becomes U+XX00 rather than vanish
    return data.decode("utf-16-be", "surrogatepass")


def char_offsets(text: str, data: bytes) -> list[int]:
    """Octet offset of each character of ``text`` in its UCS2 ``data``, and of the end."""
    if len(data) == 2 * len(text):  # all BMP: character i starts at octet 2i
        return list(range(0, len(data) + 1, 2))
    return [0, *accumulate(4 if ch > "\uffff" else 2 for ch in text)]


def clean(text: str) -> str:
    """Join surrogate halves that ended up in separate parts; replace lone ones."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")
    return text
