"""The fast content check gives the verdict of the full one (tests/core/policy_reference.py) on tricky texts."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.policy.normalize import tokens
from bridge.policy.rules import _PAIR, Action, ContentRules, LinkAction, Verdict, WordList

from .policy_reference import reference_check

# One list per action, so the rule a verdict names is never a tie between lists.
_LISTS = [
    WordList("masked", Action.MASK, ("shit", "lick", "dang it", "com", "日本"), (r"\bfree nitro\b", r"n[0o]+b")),
    WordList("held", Action.HOLD, ("kill yourself", "scam", "hxxps"), (r"\bky+s+\b", r"\bab[0-9]{2,4}\b", r"zz+t")),
    WordList("ended", Action.END, ("slurword", "fxp"), (r"\bqq[a-z]s*\b", r"w[0-9]w")),
]
_RULES = {
    (links, invites): ContentRules(_LISTS, links, invites) for links in LinkAction for invites in LinkAction
}  # fmt: skip
# Listed words and near misses, their look-alikes and disguises, links, invites, pattern bait.
_PIECES = [
    "shit", "ѕһіт", "sh\u200bit", "s h i t", "s.h.i.t", "5h1t", "SHIT", "ｓｈｉｔ", "shiitake", "1ick", "lick", "l1ck",
    "dang", "it", "dang  it", "kill", "yourself", "k1ll y0urself", "scam", "sc4m", "slurword", "sluгwoгd",
    "s l u r w o r d", "kys", "kyyss", "k y s", "ab12", "ab22", "ab22345", "ab", "free", "nitro", "n1tro", "n00b", "noob",
    "zzt", "qqx", "qqxss", "w1w", "w2w", "w w", "hxxps", "fxp", "com", "a", "b", "o", "0", "1", "x", "hello", "how are you",
    "example.com", "https://a.b.io/x.com/y", "HTTP://x.org", "ftp://f.net/a.b", "www.w.de", "www.(", "e.g.",
    "a.com/https://b.com", "a.b.c.d.e.f.g.h.i.j.k.com.io", "discord.gg/abc", "d i s c o r d . g g / x",
    "disc0rd.com/invite/x", "é", "привет", "日本", "日", "本", "ж", "日 本", "ж ж", "\u200b", "\u00ad", "\ufeff", " ", "  ", ".", ",", "-", "_", "/",
    ":", "://", "[.]", "?", "!", "\t", "\n", "42", "2024",
]  # fmt: skip
_TEXTS = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(alphabet="abklsyz01 .:/\u200bé", max_size=5)), max_size=14).map("".join)


@given(_TEXTS, st.sampled_from(sorted(_RULES)))
@settings(max_examples=3000, deadline=None)
def test_the_fast_check_gives_the_full_checks_verdict(text, key):
    rules = _RULES[key]
    assert rules.check(text) == reference_check(rules, text)


@given(st.text(max_size=80), st.sampled_from(sorted(_RULES)))
@settings(max_examples=1000, deadline=None)
def test_the_fast_check_gives_the_full_checks_verdict_on_any_text(text, key):
    rules = _RULES[key]
    assert rules.check(text) == reference_check(rules, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0 hello, how are you today? 12", Verdict(Action.ALLOW, "0 hello, how are you today? 12")),
        ("0 fine thanks, see example.com 12", Verdict(Action.MASK, "0 fine thanks, see example.*** 12", "masked")),  # masked: no link left
        ("o s h i t o", Verdict(Action.MASK, "o * * * * o", "masked")),  # a run found behind a single letter
        ("a ky kys", Verdict(Action.HOLD, "a ky kys", "held")),  # an anchored pattern behind its prefix's near miss
        ("ab2 ab22", Verdict(Action.HOLD, "ab2 ab22", "held")),  # 2 is no leet letter
        ("get free n1tro now", Verdict(Action.MASK, "get **** ***** now", "masked")),
        ("a n00b and a w2w", Verdict(Action.END, "a n00b and a w2w", "ended")),  # loose patterns of two lists
        ("www.( see", Verdict(Action.ALLOW, "www.( see")),  # "www." alone is not a link to the first look
        ("x " * 300 + "qqa", Verdict(Action.END, "x " * 300 + "qqa", "ended")),  # past the scan window
    ],
)
def test_fast_path_table(text, expected):
    rules = _RULES[(LinkAction.DEFANG, LinkAction.BLOCK)]
    assert rules.check(text) == expected == reference_check(rules, text)


_LINK_TEXT = st.lists(
    st.one_of(
        st.sampled_from(["example.com", "https://", "ftp://", "www.", "x.io/a.b", ".com", "a" * 63 + ".com", "a" * 64 + ".com",
                         "a.b.c.d.e.f.g.h.i.j.com", "K.com", "ſ.io", "٣.io", "http://x", "www.(", "a.b[.]c", " ", "\t", "\n", "<", ">", "/", ".", ":",
                         # dots that are in no link (the first look for a domain's dot rules them out) and near misses
                         "3.14", "12.30", "1.2.com", "e.g.", "...", "a.comx", "x.COM", "WWW.x", "wWw.", "ww.x", "www", ".io.", "a.i", "x.c0m"]),
        st.text(alphabet="ab.:/ -_é1", max_size=8),
    ),
    max_size=10,
).map("".join)  # fmt: skip


@given(_LINK_TEXT)
@settings(max_examples=2000, deadline=None)
def test_links_found_near_their_marks_are_those_the_pattern_finds_anywhere(text):
    # first_link searches only around "://" and dots after a letter or digit; it must find every
    # match of the link pattern, with the same span, from any starting point.
    from bridge.policy.links import URL, defang, find_link, first_link

    from .policy_reference import reference_defang

    for pos in range(len(text) + 1):
        expected = URL.search(text, pos)
        got = first_link(text, pos)
        assert (got and got.span()) == (expected and expected.span())
    found = find_link(text)  # the first look and the first link in one
    expected = URL.search(text) if re.search(r"[^\W_]\.[^\W_]|://", text) else None  # the first look, plainly
    assert (found and found.span()) == (expected and expected.span())
    for invites_only in (False, True):
        assert defang(text, invites_only=invites_only) == reference_defang(text, invites_only=invites_only)
        assert defang(text, invites_only=invites_only, first=URL.search(text)) == reference_defang(text, invites_only=invites_only)


def test_loose_patterns_that_cannot_share_one_regex_are_still_searched_per_list():
    # The same group name in two lists: no alternation of both compiles, so each list is searched alone.
    rules = ContentRules([WordList("a", Action.MASK, (), (r"(?P<x>fo+)",)), WordList("b", Action.HOLD, (), (r"(?P<x>ba+r)",))])
    assert rules.loose is None
    assert rules.check("a fooo") == Verdict(Action.MASK, "a ****", "a") == reference_check(rules, "a fooo")
    assert rules.check("baaar") == Verdict(Action.HOLD, "baaar", "b") == reference_check(rules, "baaar")
    assert rules.check("hello") == Verdict(Action.ALLOW, "hello")


@given(_TEXTS)
@settings(max_examples=2000, deadline=None)
def test_the_one_pass_over_the_folded_text_is_the_three_looks_it_stands_for(text):
    # The automaton finds " word " (a listed word or a phrase's first word), " prefix" (an anchored
    # pattern's) and " x y " (two single letters or digits in a row); `pair` adds other single
    # letters in a text that is not ASCII. Together exactly: a listed token, a run's start, a prefix.
    rules = _RULES[(LinkAction.DEFANG, LinkAction.BLOCK)]
    words = tokens(text)
    folded = " ".join(words)
    near = next(rules.near.iter(f" {folded} "), None) is not None
    if not text.isascii():
        near = near or rules.pair.search(f" {folded}") is not None
    looks = not rules.listed.isdisjoint(words) or _PAIR.search(f" {folded}") is not None or rules._started(words)
    assert near == looks
    if not near:  # then only a loose pattern can match
        assert rules._lists(words, folded)[0] == (Action.END if re.search(r"w[0-9]w", folded) else Action.HOLD if re.search(r"zz+t", folded) else Action.MASK if re.search(r"n[0o]+b", folded) else Action.ALLOW)
