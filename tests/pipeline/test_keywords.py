"""The keyword normal form shared by tenant keyword routing and consent keywords."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from smppgw.pipeline.keywords import first_word, normalize_keyword

#: Vietnamese letters with every diacritic, and their plain letter.
_VIET = {
    "a": "áàảãạăắằẳẵặâấầẩẫậ",
    "e": "éèẻẽẹêếềểễệ",
    "i": "íìỉĩị",
    "o": "óòỏõọôốồổỗộơớờởỡợ",
    "u": "úùủũụưứừửữự",
    "y": "ýỳỷỹỵ",
    "d": "đ",
}
words = st.text(alphabet=st.characters(categories=("L", "N", "P", "Z", "S", "M")), max_size=30)
ascii_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)


def test_the_examples_of_the_contract() -> None:
    for text in ("Hủy", "HUY", " huy. ", "hUy!", "H-U-Y"):
        assert normalize_keyword(text) == "HUY"
    assert normalize_keyword("TU CHOI") == normalize_keyword("Từ chối") == "TUCHOI"
    assert normalize_keyword("Đăng ký") == "DANGKY"
    assert normalize_keyword("ｈｕｙ") == "HUY"  # full-width
    assert normalize_keyword(" .,!? ") == ""


def test_every_code_point_reaches_its_normal_form_in_one_call() -> None:
    for point in range(0x30000):
        if 0xD800 <= point < 0xE000:
            continue
        normal = normalize_keyword(chr(point))
        assert normalize_keyword(normal) == normal, hex(point)


@given(words)
def test_is_idempotent_and_only_letters_and_digits(text: str) -> None:
    normal = normalize_keyword(text)
    assert normalize_keyword(normal) == normal
    assert all(c.isalnum() for c in normal)
    assert normal == normal.upper()


@given(ascii_words, st.data())
def test_ignores_case_diacritics_spaces_and_punctuation(word: str, data: st.DataObject) -> None:
    decorated = []
    for c in word:
        if c in _VIET and data.draw(st.booleans()):
            c = data.draw(st.sampled_from(_VIET[c]))
        if data.draw(st.booleans()):
            c = c.upper()
        decorated.append(c + data.draw(st.sampled_from(["", " ", ".", "-", "  ", "!"])))
    text = data.draw(st.sampled_from(["", " ", "\t"])) + "".join(decorated)
    assert normalize_keyword(text) == word.upper()


@given(words)
def test_nfc_and_nfd_spellings_agree(text: str) -> None:
    assert normalize_keyword(unicodedata.normalize("NFC", text)) == normalize_keyword(
        unicodedata.normalize("NFD", text)
    )


@given(ascii_words, words)
def test_first_word_is_the_normal_form_of_the_first_word(word: str, rest: str) -> None:
    assert first_word(f"  {word}  {rest}") == word.upper()
    assert first_word(". , " + word) == word.upper()  # punctuation alone is no word
