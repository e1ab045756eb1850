"""Where a part may end: grapheme cluster boundaries, UAX #29 simplified in the safe direction.

A part never ends inside a grapheme cluster (combining marks, emoji modifier / ZWJ / flag /
keycap / tag sequences, Hangul syllables, CR LF, consonant + virama + consonant). Where the
simplified rules are unsure they keep characters together; only a cluster longer than a
whole part is cut, and then by the segmentation at a code-point boundary.
"""

from __future__ import annotations

import unicodedata

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


def is_boundary(text: str, i: int) -> bool:
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
