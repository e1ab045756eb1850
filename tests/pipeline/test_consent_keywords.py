"""Consent keywords match whatever case, tone marks, spaces and punctuation the customer
typed: the whole MO text, normalised by ``smppgw.pipeline.keywords`` (shared with the
tenants' first-word keywords)."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from smppgw.config import ConsentConfig
from smppgw.pipeline.consent import Keywords
from smppgw.pipeline.keywords import normalize_keyword

#: Combining marks a Vietnamese keyboard (Telex/VNI) puts on letters: tones and vowel marks.
_MARKS = "\u0300\u0301\u0303\u0309\u0323\u0302\u0306\u031b"
_KEYWORD = st.text(alphabet="ABCDEFGHIKLMNOPQRSTUVXYabcdefghiklmnopqrstuvxy0123456789", min_size=1)


def test_the_forms_customers_write() -> None:
    for text in ("Hủy", "HUY", " huy. ", "hUy!", "H-U-Y", "Huỷ"):
        assert normalize_keyword(text) == "HUY", text
    for text in ("TU CHOI", "Từ chối", "tu-choi", "TỪ CHỐI.", "tuchoi"):
        assert normalize_keyword(text) == "TUCHOI", text
    assert normalize_keyword("ĐK") == normalize_keyword("dk") == "DK"  # đ has no decomposition
    assert normalize_keyword("Hủy QC") == "HUYQC"
    assert normalize_keyword(" ...!! ") == ""
    assert normalize_keyword("HUY đơn 1984") == "HUYDON1984"  # not a bare keyword any more


@given(st.text())
def test_idempotent_and_only_letters_and_digits(text: str) -> None:
    once = normalize_keyword(text)
    assert normalize_keyword(once) == once
    assert all(c.isalnum() for c in once)
    assert not any(unicodedata.combining(c) for c in unicodedata.normalize("NFKD", once))


@given(
    _KEYWORD,
    st.data(),
)
def test_case_marks_spaces_and_punctuation_do_not_matter(keyword: str, data: st.DataObject) -> None:
    typed = []
    for char in keyword:
        char = data.draw(st.sampled_from([char.lower(), char.upper()]))
        if char.isalpha():
            char += "".join(data.draw(st.lists(st.sampled_from(_MARKS), max_size=2)))
        char += data.draw(st.sampled_from(["", "", " ", ".", "-", "!", "\t", "\u00a0"]))
        typed.append(char)
    text = data.draw(st.sampled_from(["", " ", "  "])) + "".join(typed)
    for form in ("NFC", "NFD"):
        assert normalize_keyword(unicodedata.normalize(form, text)) == normalize_keyword(keyword)


@given(_KEYWORD, _KEYWORD)
def test_different_letters_stay_different(a: str, b: str) -> None:
    assert (normalize_keyword(a) == normalize_keyword(b)) == (a.lower() == b.lower())


def test_the_default_keywords_and_their_meanings() -> None:
    keywords = Keywords(ConsentConfig())
    assert keywords.match("Hủy") == ("opt_out", "HUY")
    assert keywords.match(" huy qc ") == ("opt_out", "HUY QC")
    assert keywords.match("Từ chối") == ("opt_out", "TU CHOI")
    assert keywords.match("stop.") == ("opt_out", "STOP")
    assert keywords.match("Đk") == ("opt_in", "DK")
    assert keywords.match("help?") == ("help", "HELP")
    assert keywords.match("1") is None
    assert keywords.match("huy don 1984") is None  # the whole text, not its first word
    assert keywords.match("  ") is None
