"""Text hygiene, table-tested: what can hide, spoof or flood is stripped or capped; real text survives."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.hygiene import _BLANK_LINES, _TABLE, MAX_COMBINING, clean, cut


def marks(text: str) -> int:
    return sum(unicodedata.category(ch)[0] == "M" for ch in text)


@pytest.mark.parametrize(
    "mark",
    [
        "\u0301",  # combining acute (class 230)
        "\u0489",  # combining cyrillic millions sign (enclosing)
        "\u20dd",  # combining enclosing circle
        "\u034f",  # combining grapheme joiner (class 0)
        "\u0e47",  # thai maitaikhu (class 0)
        "\u0903",  # devanagari visarga (spacing mark)
    ],
)
def test_every_kind_of_mark_counts_toward_the_tower_cap(mark):
    out = clean("a" + mark * 501 + "b")
    assert out == "a" + mark * MAX_COMBINING + "b"


def test_mixed_marks_and_zero_width_padding_do_not_reset_the_cap():
    tower = "".join(m + "\u200b" for m in "\u0489\u20dd\u034f\u0e47\u0301" * 100)
    out = clean("x" + tower + "y")
    assert marks(out) == MAX_COMBINING
    assert out.startswith("x") and out.endswith("y") and len(out) < 10


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("a\U000e0068\U000e0069b", "ab"),  # tag characters (ASCII smuggling)
        ("a" + "".join(chr(c) for c in range(0xE0020, 0xE0080)) + "b", "ab"),
        ("a\U000e0001b", "ab"),  # language tag
        ("a\u206a\u206b\u206c\u206d\u206e\u206fb", "ab"),  # deprecated format controls
        ("a\ufff9note\ufffaruby\ufffbb", "anoterubyb"),  # interlinear annotation marks
        ("soft\u00adhyphen", "softhyphen"),
        ("a\u3164b", "ab"),  # hangul filler
        ("a\u115f\u1160\uffa0b", "ab"),  # hangul choseong/jungseong/halfwidth fillers
        ("a\u2061\u2062\u2063\u2064b", "ab"),  # invisible operators
        ("line one\u2028line two\u2029para", "line one\nline two\npara"),
        ("a\u2028\u2028\u2028\u2028\u2028\u2028b", "a\n\n\nb"),  # separators obey the blank-line cap
        ("a\u202eb", "ab"),  # bidi override (as before)
    ],
)
def test_invisible_and_separator_characters(raw, expected):
    assert clean(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["\u200b", "\u200b" * 50, "\u200b \u200c\u200d", "\u2060\u180e", "\u3164\u3164", "\u2800", "\u00ad", "\U000e0041 \u3000"],
)
def test_a_message_of_only_invisible_characters_is_empty(raw):
    assert clean(raw) == ""


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii",
        "Crème brûlée, Ελληνικά, русский",
        "ภาษาไทย น้ำ",  # thai: consonant + vowel + tone mark stays whole
        "हिन्दी नमस्ते",
        "한국어 조선글",
        "👨\u200d👩\u200d👧 ❤\ufe0f 1\ufe0f\u20e3",  # emoji sequences and a keycap
        "نمی\u200cخواهم",  # persian zero-width non-joiner
        "a\u200bb",  # one zero-width space between words is left alone
    ],
)
def test_real_text_survives(text):
    assert clean(text) == text


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80), st.integers(min_value=5, max_value=100))
@settings(max_examples=300, deadline=None)
def test_the_printable_ascii_fast_path_agrees_with_the_full_cleaning(text, limit):
    # Printable ASCII skips the table, the line-break passes and the blank-line cap: the result
    # must be what those passes give (they change nothing there), for every ASCII text.
    full = _BLANK_LINES.sub("\n\n\n", text.translate(_TABLE).replace("\r\n", "\n").replace("\r", "\n"))
    assert clean(text) == full
    assert clean(text, limit) == cut(full, limit)
    if text.isprintable():
        assert clean(text) == text
