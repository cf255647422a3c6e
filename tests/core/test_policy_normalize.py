"""Folding text for matching: look-alikes, invisible characters, spacing tricks, leetspeak; table and property tests."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.policy.normalize import MAX_RUN, fold, fold_spans, joined_runs, tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello World", "hello world"),
        ("FUCK", "fuck"),
        ("ｆｕｃｋ", "fuck"),  # fullwidth
        ("𝐟𝐮𝐜𝐤", "fuck"),  # mathematical bold
        ("𝔣𝔲𝔠𝔨", "fuck"),  # mathematical fraktur
        ("ⓕⓤⓒⓚ", "fuck"),  # circled
        ("🇫🇺🇨🇰", "fuck"),  # regional indicators
        ("fuсk", "fuck"),  # Cyrillic es
        ("ЅНІТ", "shit"),  # Cyrillic capitals
        ("ѕһіт", "shit"),  # Cyrillic small letters
        ("ΚΙLL", "kill"),  # Greek capitals
        ("fսck", "fuck"),  # Armenian
        ("ꜰᴜᴄᴋ", "fuck"),  # small capitals
        ("fück", "fuck"),  # a combining mark, precomposed
        ("fu\u0308ck", "fuck"),  # and as a separate mark
        ("f\u200bu\u200cc\u200dk", "fuck"),  # zero-width space, non-joiner, joiner
        ("f\u2060u\ufeffc\u00adk", "fuck"),  # word joiner, BOM, soft hyphen
        ("fu\u202eck", "fuck"),  # a bidi override
        ("f\u3164uck", "fuck"),  # a Hangul filler (an invisible letter)
        ("sh1t", "shit"),
        ("5h!7", "sh t"),  # "!" is punctuation, a separator
        ("@$$", "ass"),
        ("n00b 4 3v3r", "noob a ever"),
        ("f.u.c.k", "f u c k"),
        ("f_u_c_k", "f u c k"),
        ("f-u-c-k", "f u c k"),
        ("f  u\tc\nk", "f u c k"),
        ("don't", "don t"),
        ("", ""),
        ("...", ""),
        ("日本語 テキスト", "日本語 テキスト"),  # other scripts pass through as tokens
    ],
)
def test_fold_table(text, expected):
    assert fold(text) == expected


@pytest.mark.parametrize(
    ("words", "runs"),
    [
        (["f", "u", "c", "k"], [(0, "fuck")]),
        (["what", "the", "f", "u", "c", "k"], [(2, "fuck")]),
        (["a", "f", "u", "c", "k", "man", "x", "y"], [(0, "afuck"), (6, "xy")]),
        (["a", "word"], []),  # one letter alone is not a run
        (["hello", "world"], []),
        (["a"] * (MAX_RUN + 5), [(0, "a" * MAX_RUN), (MAX_RUN, "a" * 5)]),  # runs are bounded
    ],
)
def test_joined_runs(words, runs):
    assert joined_runs(words) == runs


def test_spans_point_at_the_original_characters():
    text = "ok Ѕ.һ.і.т and fück"
    words, spans = fold_spans(text)
    assert words == ["ok", "s", "h", "i", "t", "and", "fuck"]
    assert [text[a:b] for a, b in spans] == ["ok", "Ѕ", "һ", "і", "т", "and", "fück"]


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_the_slow_span_pass_folds_exactly_like_the_fast_one(text):
    words, spans = fold_spans(text)
    assert words == tokens(text)
    assert all(0 <= a < b <= len(text) for a, b in spans)
    assert spans == sorted(spans)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=200))
def test_the_ascii_fast_path_agrees_with_the_unicode_path(text):
    # A non-ASCII character that folds away (a zero-width space) sends the text down the other path.
    assert tokens(text + "\u200b") == tokens(text)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(list("ÀÉİIıſßＡΣσςΩ①⑴ﬁΗЅК0134578@$ \u0301\u200b")), st.characters()), max_size=60).map("".join))
def test_the_second_pass_is_skipped_only_where_it_changes_nothing(text):
    # The plain definition: NFKD, the table, casefold, the table again.
    from bridge.policy.normalize import _TABLE, _fold_unicode

    assert _fold_unicode(text) == unicodedata.normalize("NFKD", text).translate(_TABLE).casefold().translate(_TABLE)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=100))
def test_folding_is_idempotent_and_yields_no_invisible_characters(text):
    once = fold(text)
    assert fold(once) == once
    assert not any(unicodedata.category(c) in ("Cf", "Mn", "Me", "Mc") for c in once)
    assert once == once.casefold()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]), max_size=3), st.integers(0, 4))
def test_invisible_characters_anywhere_in_a_word_change_nothing(inserted, where):
    word = "fuck"
    where = min(where, len(word))
    assert tokens(word[:where] + "".join(inserted) + word[where:]) == ["fuck"]
