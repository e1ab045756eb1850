"""MO keywords (STOP, HỦY, TỪ CHỐI, ...) compared the way customers actually type them.

A customer who wants no more promotions writes ``Hủy``, ``HUY``, `` huy. ``, ``Từ chối``
or ``TU-CHOI`` from a phone keyboard that may or may not add Vietnamese tone marks,
capitals, a full stop or a stray space. All of those must mean the same keyword: a missed
opt-out is a complaint to the regulator. So a text and every configured keyword go through
:func:`normalize_keyword` and are compared as plain strings.
"""

from __future__ import annotations

import unicodedata

#: Letters with a stroke that Unicode does not decompose into a base letter plus a mark
#: (Vietnamese đ above all): typed without diacritics they are their base letter.
_STROKES = str.maketrans({"đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "ł": "l", "Ł": "L"})


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_STROKES).casefold())
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c)).translate(
        _STROKES
    )


def normalize_keyword(text: str) -> str:
    """``text`` without case, diacritics, spaces or punctuation: ``" Từ chối. "`` →
    ``"tuchoi"``, ``"Hủy QC"`` → ``"huyqc"``, ``"STOP!"`` → ``"stop"``.

    Only letters and digits are kept (any script), their diacritics removed (NFKD, then
    combining marks dropped; đ → d), case-folded. Idempotent, so a normalised keyword can
    be normalised again at no risk. An empty result means the text holds no keyword at all.
    """
    folded = _fold(text)
    # A case folding can yield characters that decompose further (rare, outside Latin and
    # Vietnamese): fold again until nothing changes (twice at most in practice).
    for _ in range(_MAX_PASSES):
        again = _fold(folded)
        if again == folded:
            break
        folded = again
    return folded


#: Passes of :func:`_fold` after the first; Unicode's mappings settle within two.
_MAX_PASSES = 4
