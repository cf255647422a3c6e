"""Content rules: word lists and patterns with their actions, evasion, links and invites, safe operator regexes, layers."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bridge.policy.config import PolicySection
from bridge.policy.patterns import SCAN_WINDOW, UnsafePattern, check_pattern, compile_patterns, scan
from bridge.policy.rules import Action, ContentRules, LinkAction, Verdict, WordList, defang

RULES = ContentRules(
    [
        WordList("profanity", Action.MASK, ("fuck", "shit", "lick")),
        WordList("abuse", Action.HOLD, ("kill yourself",), (r"\bky+s+\b",)),
        WordList("slurs", Action.END, ("slurword",)),
        WordList("spam", Action.MASK, (), (r"\bfree nitro\b",)),
    ]
)


@pytest.mark.parametrize(
    ("text", "action", "relayed", "rule"),
    [
        ("hello there", Action.ALLOW, "hello there", None),
        ("Scunthorpe and classic assassins", Action.ALLOW, "Scunthorpe and classic assassins", None),
        ("what the fuck", Action.MASK, "what the ****", "profanity"),
        ("what the FUCK!", Action.MASK, "what the ****!", "profanity"),
        ("what the f u c k man", Action.MASK, "what the * * * * man", "profanity"),
        ("F.U.C.K", Action.MASK, "*******", "profanity"),
        ("a f_u_c_k", Action.MASK, "a *******", "profanity"),  # a word inside a run of single letters
        ("ѕһіт happens", Action.MASK, "**** happens", "profanity"),  # Cyrillic
        ("ｓｈｉｔ happens", Action.MASK, "**** happens", "profanity"),  # fullwidth
        ("sh\u200bit happens", Action.MASK, "*****" + " happens", "profanity"),  # zero-width inside
        ("sh1t and 1ick", Action.MASK, "**** and ****", "profanity"),  # leet: 1 as i and as l
        ("fück and shit", Action.MASK, "**** and ****", "profanity"),
        ("please k1ll y0urself", Action.HOLD, "please k1ll y0urself", "abuse"),  # a phrase
        ("KILL   YOURSELF", Action.HOLD, "KILL   YOURSELF", "abuse"),
        ("kysss", Action.HOLD, "kysss", "abuse"),  # a pattern
        ("k y s", Action.ALLOW, "k y s", None),  # patterns see the folded text as it is
        ("get free n1tro here", Action.MASK, "get **** ***** here", "spam"),
        ("fuck you slurword", Action.END, "fuck you slurword", "slurs"),  # the most severe wins
        ("sluгwoгd", Action.END, "sluгwoгd", "slurs"),  # Cyrillic ghe as r
        ("s l u r w o r d", Action.END, "s l u r w o r d", "slurs"),
    ],
)
def test_content_table(text, action, relayed, rule):
    assert RULES.check(text) == Verdict(action, relayed, rule)


@pytest.mark.parametrize(
    ("links", "invites", "text", "action", "relayed", "rule"),
    [
        ("allow", "block", "see https://example.com/x", Action.ALLOW, "see https://example.com/x", None),
        ("allow", "block", "join discord.gg/abc123", Action.HOLD, "join discord.gg/abc123", "invites"),
        ("allow", "block", "join https://discord.com/invite/abc", Action.HOLD, "join https://discord.com/invite/abc", "invites"),
        ("allow", "block", "discordapp.com/invite/abc", Action.HOLD, "discordapp.com/invite/abc", "invites"),
        ("allow", "block", "disc0rd . gg / abc", Action.HOLD, "disc0rd . gg / abc", "invites"),
        ("allow", "block", "d i s c o r d.gg/x", Action.HOLD, "d i s c o r d.gg/x", "invites"),
        ("allow", "block", "ԁіѕсогԁ.gg/x", Action.HOLD, "ԁіѕсогԁ.gg/x", "invites"),
        ("allow", "block", "discord\u200b.gg/x", Action.HOLD, "discord\u200b.gg/x", "invites"),
        ("allow", "block", "I like discord", Action.ALLOW, "I like discord", None),
        ("allow", "defang", "discord.gg/abc and example.com", Action.ALLOW, "discord[.]gg/abc and example.com", "invites"),
        ("allow", "allow", "discord.gg/abc", Action.ALLOW, "discord.gg/abc", None),
        ("defang", "block", "see https://evil.example.com/a.b now", Action.ALLOW, "see hxxps://evil[.]example[.]com/a[.]b now", "links"),
        ("defang", "block", "www.example.org", Action.ALLOW, "www[.]example[.]org", "links"),
        ("defang", "block", "no link here.", Action.ALLOW, "no link here.", None),
        ("block", "block", "go to evil.com", Action.HOLD, "go to evil.com", "links"),
        ("block", "allow", "discord.gg/abc", Action.HOLD, "discord.gg/abc", "links"),
        ("block", "block", "see e.g. the file", Action.ALLOW, "see e.g. the file", None),
    ],
)
def test_link_table(links, invites, text, action, relayed, rule):
    rules = ContentRules([], LinkAction(links), LinkAction(invites))
    assert rules.check(text) == Verdict(action, relayed, rule)


def test_mask_and_defang_together():
    rules = ContentRules([WordList("p", Action.MASK, ("shit",))], links=LinkAction.DEFANG)
    assert rules.check("shit at http://a.com") == Verdict(Action.MASK, "**** at hxxp://a[.]com", "p")


def test_defang_strips_format_characters_that_would_hide_a_link():
    assert defang("http://a\u200b.com") == "hxxp://a[.]com"


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("(a+)+", "nested quantifier"),
        ("(a*)*b", "nested quantifier"),
        ("(.*)*", "nested quantifier"),
        (r"(\w+\s?)+$", "nested quantifier"),
        ("(x+x+)+y", "nested quantifier"),
        ("(a|a)*", "alternatives that can match the same text"),
        ("(a|ab)+c", "alternatives that can match the same text"),
        ("(|a)+", "alternatives that can match the same text"),
        ("(a?)*", "nested quantifier"),
        ("(?:a|)*", "alternatives that can match the same text"),
        (r"(a)\1", "backreferences"),
        ("(?P<x>a)(?P=x)", "backreferences"),
        ("(a)?(?(1)b|c)", "backreferences"),
        ("a.*b.*c.*d", "more than 2 unbounded repeats"),
        ("a+a+a+b", "more than 2 unbounded repeats"),
        ("a{2000}", "a repeat count above 1000"),
        ("x" * 201, "longer than 200"),
        ("(?i)abc", "global inline flags"),
        ("[", "not a valid regex"),
    ],
)
def test_catastrophic_or_bad_patterns_are_refused_with_the_pattern_named(pattern, why):
    with pytest.raises(UnsafePattern) as info:
        check_pattern(pattern)
    assert why in str(info.value)
    assert repr(pattern[:40]) [:-1] in str(info.value)


@pytest.mark.parametrize(
    "pattern",
    [r"\bkys+\b", r"\bk+y+s+\b", r"(\d|\w)+", r"https?://\S+", "(ab|cd)*", "(a|b)+", r"(?:\d{3}-)+", "(?i:abc)", "x.*y+z", "free nitro"],
)
def test_ordinary_patterns_are_accepted(pattern):
    check_pattern(pattern)
    assert compile_patterns([pattern]) is not None


def test_config_refuses_a_catastrophic_pattern_naming_the_key_and_the_pattern():
    with pytest.raises(ValidationError) as info:
        PolicySection.model_validate({"lists": {"spam": {"action": "hold", "patterns": ["ok", "(a+)+$"]}}})
    (err,) = info.value.errors()
    assert err["loc"] == ("lists", "spam", "patterns")
    assert "'(a+)+$'" in err["msg"] and "nested quantifier" in err["msg"]


def test_config_refuses_unknown_keys_and_bad_values_by_name():
    with pytest.raises(ValidationError) as info:
        PolicySection.model_validate(
            {
                "linkz": "block",
                "invites": "maybe",
                "lists": {"x": {"words": ["a"]}},
                "scopes": {"nocolon": {}},
                "ban_steps": ["7d", "1h"],
                "report_threshold": 1,
                "start_cooldown": "soon",
            }
        )
    locs = {e["loc"][:2] if e["loc"][0] == "lists" else e["loc"][:1] for e in info.value.errors()}
    assert locs == {("linkz",), ("invites",), ("lists", "x"), ("scopes",), ("ban_steps",), ("report_threshold",), ("start_cooldown",)}


def test_layers_base_platform_scope():
    policy = PolicySection.model_validate(
        {
            "lists": {"p": {"action": "mask", "words": ["shit"]}},
            "platforms": {
                "discord": {"links": "defang", "lists": {"p": {"action": "hold", "words": ["shit"]}}},
                "matrix": {"invites": "allow"},
            },
            "scopes": {
                "discord:111": {"lists": {"p": {"enabled": False}}, "links": "block"},
                "matrix:!room:example.org": {"lists": {"extra": {"action": "end", "words": ["bye"]}}},
            },
            "ban_steps": ["1h", "1d", "7d"],
        }
    )
    assert policy.rules_for("web").check("shit a.com") == Verdict(Action.MASK, "**** a.com", "p")
    assert policy.rules_for("discord").check("shit") == Verdict(Action.HOLD, "shit", "p")
    assert policy.rules_for("discord").check("a.com") == Verdict(Action.ALLOW, "a[.]com", "links")
    assert policy.rules_for("discord", "111").check("shit") == Verdict(Action.ALLOW, "shit", None)
    assert policy.rules_for("discord", "111").check("a.com") == Verdict(Action.HOLD, "a.com", "links")
    assert policy.rules_for("discord", "222").check("shit") == Verdict(Action.HOLD, "shit", "p")  # unknown scope: platform
    assert policy.rules_for("matrix", "!room:example.org").check("shit bye") == Verdict(Action.END, "shit bye", "extra")
    assert policy.rules_for("matrix", "!room:example.org").check("discord.gg/x") == Verdict(Action.ALLOW, "discord.gg/x", None)
    assert policy.rules_for("matrix").check("shit") == Verdict(Action.MASK, "****", "p")
    assert policy.ban_steps == (3600.0, 86400.0, 604800.0)
    assert policy.rules_for("discord") is policy.rules_for("discord", "333")  # compiled once


def test_patterns_scan_the_whole_of_a_long_message_in_bounded_windows():
    regex = compile_patterns([r"\bneedle\b"])
    text = ("hay " * 5000) + "needle " + ("hay " * 10) + "needle"
    spans = list(scan(regex, text))
    assert [text[a:b] for a, b in spans] == ["needle", "needle"]
    # a word cut by a window edge is not mistaken for a whole word
    for cut in range(SCAN_WINDOW - 8, SCAN_WINDOW + 8):
        filler = "x" * cut
        assert list(scan(regex, filler + "needles " + "y" * 600)) == []


def test_a_listed_word_after_a_long_filler_is_still_found():
    assert RULES.check("fine " * 3000 + "kysss").action is Action.HOLD


# ---- properties -----------------------------------------------------------------------------

_DISGUISE = {
    "a": ["a", "A", "а", "α", "ａ", "4", "@", "𝐚"],
    "c": ["c", "C", "с", "ϲ", "ｃ", "𝐜"],
    "f": ["f", "F", "ｆ", "𝐟", "ꜰ"],
    "h": ["h", "H", "һ", "ｈ", "Н"],
    "i": ["i", "I", "і", "ι", "1", "ｉ"],
    "k": ["k", "K", "к", "κ", "ｋ", "𝐤"],
    "r": ["r", "R", "г", "ｒ"],
    "s": ["s", "S", "ѕ", "5", "$", "ｓ"],
    "t": ["t", "T", "т", "τ", "7", "ｔ"],
    "u": ["u", "U", "υ", "ս", "ｕ", "ü"],
}
_INVISIBLE = ["", "", "", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]


@st.composite
def disguised(draw, word):
    out = []
    spaced = draw(st.sampled_from(["", "", " ", ".", "_", "-", " . "]))
    for i, ch in enumerate(word):
        out.append(draw(st.sampled_from(_DISGUISE[ch])) + draw(st.sampled_from(_INVISIBLE)))
        if spaced and i < len(word) - 1:
            out.append(spaced)
    return "".join(out)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["fuck", "shit", "trash"]).flatmap(lambda w: st.tuples(st.just(w), disguised(w))), st.sampled_from(["", "oh ", "what the ", "a "]))
def test_disguised_words_are_always_caught(pair, prefix):
    word, text = pair
    rules = ContentRules([WordList("w", Action.HOLD, (word,))])
    assert rules.check(prefix + text + " ok").action is Action.HOLD, text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["hello", "world", "how", "are", "you", "classic", "shiitake", "kit", "fun", "lol"]), max_size=20))
def test_clean_text_is_relayed_unchanged(words):
    text = " ".join(words)
    assert RULES.check(text) == Verdict(Action.ALLOW, text, None)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gets_a_verdict_and_masking_keeps_the_shape(text):
    verdict = RULES.check(text)
    if verdict.action is Action.MASK:
        assert len(verdict.text) == len(text)
        assert [c for c in verdict.text if c != "*"] == [c for c, m in zip(text, verdict.text) if m != "*"]
        assert verdict.text != text
    elif verdict.action is Action.ALLOW:
        assert verdict.text == text


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [(r"\bfoo[0-9]+", "foo"), (r"\bfree nitro", "fre"), (r"\bk+y", "k"), (r"\bab?c", "a"), ("foo", None),
     (r"\b(?i:Foo)", None), (r"\b\d+", None), (r"\bfoo|bar", None), (r"\b", None)],
)  # fmt: skip
def test_anchored_prefixes(pattern, prefix):
    from bridge.policy.patterns import anchored_prefix

    assert anchored_prefix(pattern) == prefix


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["free", "nitro", "fr", "kyss", "ky", "k", "x", "abc", "ac", "freebie"]), max_size=12))
def test_anchored_patterns_find_exactly_what_a_plain_search_finds(words):
    # The prefix index may only skip patterns that cannot match: compare with re.search on every pattern.
    patterns = [r"\bfree nitro\b", r"\bky+s+\b", r"\bab?c\b", r"fre+bie", r"\bx\b"]
    rules = ContentRules([WordList(f"p{i}", Action.HOLD, (), (p,)) for i, p in enumerate(patterns)])
    text = " ".join(words)
    expected = any(re.search(p, text) for p in patterns)
    assert (rules.check(text).action is Action.HOLD) == expected


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
@settings(max_examples=300, deadline=None)
def test_the_default_policy_fast_path_agrees_with_the_full_check(text):
    # The default rules (no lists, links allowed, invites blocked) skip folding for ASCII text
    # without a "d": the verdict must be the one the full check gives.
    fast = ContentRules()
    assert fast.only_invites
    full = ContentRules()
    full.only_invites = False
    for probe in (text, text + " discord.gg/abc", "D1sc0rd . gg / x" + text):
        assert fast.check(probe) == full.check(probe)


_LINKISH = st.text(alphabet=st.sampled_from(list("ab1_.:/ -é٣[]hHtTpPsSſ\u200b")), max_size=30)


@given(_LINKISH)
@settings(max_examples=500, deadline=None)
def test_the_cheap_link_look_and_defang_match_their_plain_definitions(text):
    # The first look for a link is written dot first for speed; it must find one exactly where
    # "a letter or digit, a dot, a letter or digit" or "://" is. And defanging is the plain
    # definition: format characters dropped, http(s) and ftp schemes as hxxp(s) and fxp, every dot
    # of a link (its path too) bracketed, again until no link is left.
    from bridge.policy import links

    assert bool(links._MAYBE_LINK.search(text)) == bool(re.search(r"[^\W_]\.[^\W_]|://", text))

    def plain(match):
        url = re.sub(r"(?i)\b(h)tt(ps?)://", r"\1xx\2://", match.group(0))
        return re.sub(r"(?i)\b(f)t(p)://", r"\1x\2://", url).replace(".", "[.]")

    def fixed_point(text):
        while (again := links.URL.sub(plain, text)) != text:
            text = again
        return text

    for candidate in (text, "see " + text + " and https://" + text, "HTTPſ://a.com/" + text, "x.com/h://" + text):
        out = defang(candidate)
        assert out == fixed_point(candidate.translate(links.FORMAT))
        assert links.URL.search(out) is None and defang(out) == out  # no link is left: a fixed point


# Texts with links (schemes, paths that read as links, long label chains, invites), listed words
# and their look-alikes, and words a defanged link brings (hxxps, fxp).
_PIECES = st.sampled_from([
    "example.com", "https://a.b.io/x.com/y", "HTTP://x.org", "ftp://f.net/a.b", "www.w.de", "a.com/https://b.com",
    "a.b.c.d.e.f.g.h.i.j.k.com.io", "x.comfoo.io", "discord.gg/abc", "d i s c o r d . g g / x", "shit", "ѕһit",
    "s h i t", "kys", "free nitro", "hxxps", "fxp", "xx", "hello", "a", ".", "/", "://", "[.]", " ", "\u200b", "é",
])  # fmt: skip
_TEXTS = st.lists(st.one_of(_PIECES, st.text(alphabet="abc.:/ hxtps", max_size=6)), max_size=12).map("".join)
_WORDS = st.lists(st.sampled_from(["shit", "hxxps", "fxp", "hello", "com", "xx", "nitro"]), max_size=3, unique=True)


@given(_TEXTS, _WORDS, st.sampled_from(list(LinkAction)), st.sampled_from(list(LinkAction)), st.booleans())
@settings(max_examples=1500, deadline=None)
def test_a_relayed_text_the_rules_call_settled_is_relayed_unchanged_when_checked_again(text, words, links, invites, pattern):
    # The receiver's check of what the sender's check relayed is answered from the sender's
    # verdict when `settled` says so: the fresh check must then relay that text unchanged, naming no rule.
    lists = [WordList("w", Action.MASK, tuple(words)), WordList("p", Action.HOLD, (), (r"\bhx+ps\b",) if pattern else ())]
    rules = ContentRules(lists, links=links, invites=invites)
    first = rules.check(text)
    if rules.settled(text, first):
        assert rules.check(first.text) == Verdict(Action.ALLOW, first.text)
    if first.action == Action.ALLOW and first.rule in ("links", "invites"):  # the links are left defanged as they are
        assert defang(first.text, invites_only=links == LinkAction.ALLOW) == first.text
