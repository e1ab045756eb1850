"""One normal form for SMS keywords, so ``Hủy``, ``HUY``, `` huy. `` and ``H-U-Y`` are one word.

Customers type keywords on phone keyboards: in any case, with or without Vietnamese
diacritics (or with some of them), with a trailing dot, spaces, a smiley. Every keyword
comparison in the gateway (a tenant's ``keywords`` against an MO's first word; consent's
opt-out, opt-in and help keywords against the whole text) goes through
:func:`normalize_keyword` on both sides, so they all agree on what "the same keyword" is.

The normal form: Unicode NFKD (compatibility forms such as full-width letters become
plain ones), every combining mark dropped (the diacritics: ``ủ`` → ``u``), ``đ``/``Đ`` →
``d`` (a letter of its own in Unicode, with no decomposition), case folded and then upper
case, and everything that is not a letter or a digit dropped (spaces, punctuation,
symbols, emoji). ``TU CHOI`` and ``Từ chối`` are both ``TUCHOI``.
"""

from __future__ import annotations

import unicodedata

#: Letters that carry their "diacritic" without a decomposition.
_EXTRA = str.maketrans({"đ": "d", "Đ": "D", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L"})


def normalize_keyword(text: str) -> str:
    """``text`` in keyword normal form: upper-case ASCII-ish letters and digits only
    (``"  Hủy. "`` → ``"HUY"``); ``""`` when nothing of it is a letter or a digit."""
    normal = _once(text)
    # A handful of letters (Ǿ: O with stroke and acute) need a second pass to reach the
    # fixed point; two passes reach it for every code point (checked by the tests).
    return _once(normal)


def _once(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_EXTRA))
    kept = [c for c in decomposed if not unicodedata.combining(c)]
    folded = unicodedata.normalize("NFKD", "".join(kept).casefold())
    return "".join(c for c in folded if c.isalnum() and not unicodedata.combining(c)).upper()


def first_word(text: str) -> str:
    """The normal form of ``text``'s first word (split on whitespace): what a tenant's
    ``keywords`` are compared with (``"Shop1 toi muon mua"`` → ``"SHOP1"``)."""
    for word in text.split():
        normal = normalize_keyword(word)
        if normal:
            return normal
    return ""
