"""Content rules compiled for speed: word lists and patterns with an action each, and the link policy."""

from __future__ import annotations

import enum
import re
import string
from dataclasses import dataclass
from operator import itemgetter

import ahocorasick

from .links import FORMAT, INVITE, defang, find_link
from .normalize import ASCII_FOLD, MAX_RUN, fold_spans, joined_runs, tokens
from .patterns import SCAN_WINDOW, anchored_prefix, compile_patterns, scan

__all__ = ["Action", "ContentRules", "LinkAction", "Verdict", "WordList", "defang"]


class Action(enum.IntEnum):
    """What happens to a message; a larger value wins when several rules match."""

    ALLOW = 0
    MASK = 1  # relayed with the matched words replaced by asterisks
    HOLD = 2  # not relayed; the sender is told
    END = 3  # not relayed; the chat ends


class LinkAction(str, enum.Enum):
    """What happens to a link in a message."""

    ALLOW = "allow"
    DEFANG = "defang"  # relayed as hxxps://example[.]com/a[.]html: readable, not clickable
    BLOCK = "block"  # the message is held


@dataclass(frozen=True, slots=True)
class WordList:
    """One operator list: words (whole words or phrases) and regex patterns, and what a match does."""

    name: str
    action: Action
    words: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, init=False)
class Verdict:
    """The outcome of a check: the action, the text to relay, and the rule that decided it."""

    action: Action
    text: str
    rule: str | None = None  # a list name, "links" or "invites"; None when nothing matched

    def __init__(self, action: Action, text: str, rule: str | None = None) -> None:
        # The generated frozen __init__, by hand (object.__setattr__ per field costs twice as much).
        _SET_ACTION(self, action)
        _SET_TEXT(self, text)
        _SET_RULE(self, rule)


_SET_ACTION, _SET_TEXT, _SET_RULE = (Verdict.__dict__[name].__set__ for name in ("action", "text", "rule"))


@dataclass(slots=True)
class _Hit:
    action: Action
    rule: str
    first: int  # token index
    last: int  # token index, inclusive


class ContentRules:
    """One compiled policy layer. `check` is the only hot call: one fold, one automaton pass that
    rules out listed words, single-letter runs and anchored patterns, one search for the other
    patterns, a look for links at the dots of domains only, and the slow span-mapping pass only
    when something must be masked."""

    __slots__ = (
        "words", "phrases", "phrase_lengths", "phrase_first", "prefixes", "patterns", "anchored", "links", "invites",
        "only_invites", "pair", "starts", "near", "loose", "listed", "listing",
    )  # fmt: skip

    def __init__(
        self, lists: list[WordList] | tuple[WordList, ...] = (), links: LinkAction = LinkAction.ALLOW,
        invites: LinkAction = LinkAction.BLOCK,
    ) -> None:  # fmt: skip
        self.words: dict[str, tuple[Action, str]] = {}
        self.phrases: dict[str, tuple[Action, str]] = {}
        self.phrase_lengths: set[int] = set()
        self.phrase_first: set[str] = set()
        self.patterns: list[tuple[Action, str, re.Pattern[str]]] = []  # one alternation per list
        # Patterns that start at a word boundary with literal letters, by prefix length and
        # prefix: they run only on messages with a token that starts so.
        self.anchored: dict[int, dict[str, list[tuple[Action, str, re.Pattern[str]]]]] = {}
        for wl in lists:
            for word in wl.words:
                for variant in _variants(tokens(word)):
                    if not variant:
                        continue
                    table = self.words if len(variant) == 1 else self.phrases
                    key = " ".join(variant)
                    if key not in table or table[key][0] < wl.action:
                        table[key] = (wl.action, wl.name)
                    if len(variant) > 1:
                        self.phrase_lengths.add(len(variant))
                        self.phrase_first.add(variant[0])
                        # "killyourself" and "k i l l y o u r s e l f" count as the phrase too
                        joined = "".join(variant)
                        if joined not in self.words or self.words[joined][0] < wl.action:
                            self.words[joined] = (wl.action, wl.name)
            loose = []
            for pattern in wl.patterns:
                prefix = anchored_prefix(pattern)
                if prefix is None:
                    loose.append(pattern)
                else:
                    single = compile_patterns([pattern])
                    self.anchored.setdefault(len(prefix), {}).setdefault(prefix, []).append((wl.action, wl.name, single))
            regex = compile_patterns(loose)
            if regex is not None:
                self.patterns.append((wl.action, wl.name, regex))
        self.patterns.sort(key=_severity)  # the most severe first: a hit there ends the search
        # Every prefix of a listed word: a walk along a run of single letters stops as soon as
        # what it has read begins no listed word (a trie, kept as a set).
        self.prefixes = {w[:n] for w in self.words if len(w) <= MAX_RUN for n in range(1, len(w) + 1)}
        # Listed words and the first words of phrases: one look-up rules both out (a frozenset's
        # isdisjoint is twice as fast as a dict view's).
        self.listed = frozenset(self.words) | self.phrase_first
        self.links = LinkAction(links)
        self.invites = LinkAction(invites)
        self.listing = bool(self.words or self.phrases or self.patterns or self.anchored)  # some list can match
        # No lists and links allowed (the default policy): only an invite can matter.
        self.only_invites = not self.listing and self.links == LinkAction.ALLOW
        # What the run walk and the anchored patterns need: two single-letter tokens in a row
        # (searched in " folded text"), and a token that starts with an anchored prefix (the
        # prefixes of each length as a set, met by each token's start of that length).
        self.pair = _PAIR if self.words else None
        self.starts = tuple((itemgetter(slice(0, size)), frozenset(table)) for size, table in sorted(self.anchored.items()))
        # All three looks in one pass over " folded text ": an Aho-Corasick automaton of " word "
        # for every listed word and phrase's first word, " prefix" for every anchored prefix, and
        # " x y " for every two single letters or digits in a row (what folded ASCII text is made
        # of; a text with other letters is also searched for pairs by `pair`). Most messages hit
        # none of them: one C call rules out the lists but for loose patterns.
        keys = {f" {word} " for word in self.listed} | {f" {prefix}" for table in self.anchored.values() for prefix in table}
        if self.words:
            keys.update(f" {x} {y} " for x in _FOLDED_ASCII for y in _FOLDED_ASCII)
        self.near = _automaton(keys) if keys else None
        # Every list's loose patterns in one alternation (one list: its own): a text it finds
        # nothing in needs no search per list (a top-level alternation of safe patterns costs
        # their sum, no more). None: there are none, or they cannot share one regex.
        loose = [regex for _, _, regex in self.patterns]
        self.loose = loose[0] if len(loose) == 1 else _alternation(loose) if loose else None

    def clearly_allowed(self, text: str) -> bool:
        """True when no rule can match `text`, found without folding it: `check` then allows it unchanged."""
        # Folded ASCII text spells "discord" only from a "d" or "D" (no leet digit reads "d"):
        # under the default rules (only invites matter) a message without one passes. Most messages.
        return self.only_invites and text.isascii() and "d" not in text and "D" not in text

    def settled(self, text: str, verdict: Verdict) -> bool:
        """True when `verdict` (of `check(text)`) relays a text that `check` relays unchanged with
        no rule named: Verdict(ALLOW, verdict.text). So it is for a text allowed unchanged, and for
        one whose links alone were defanged (`defang` leaves no link, and the words are the same
        words: brackets are separators) unless a scheme was renamed while lists could match the
        new word (a listed "hxxps"). Masked texts and defanged invites are not: the check of the
        result names the rule again, or may find a run of letters the asterisks now join."""
        if verdict.action != _ALLOW:
            return False
        rule = verdict.rule
        return rule is None or (rule == "links" and ("://" not in text or not self.listing))

    def check(self, text: str) -> Verdict:
        """The verdict on one message (either direction)."""
        verdict = self.changes(text)
        return Verdict(_ALLOW, text) if verdict is None else verdict

    def changes(self, text: str) -> Verdict | None:
        """The verdict on one message, or None when `check` relays it unchanged naming no rule
        (most messages: no Verdict is made for them). Written for the common case: enum members
        are read once per module (an enum's attribute costs three times a global)."""
        is_ascii = text.isascii()
        if self.only_invites and is_ascii and "d" not in text and "D" not in text:  # clearly_allowed
            return None
        words = text.encode("ascii").translate(ASCII_FOLD).decode("ascii").split() if is_ascii else tokens(text)  # tokens, inlined
        best, hits = _ALLOW, ()
        if self.listing:
            # One pass of the automaton rules out the word lists, phrases, runs and anchored
            # patterns, one search the loose patterns: most messages need no more.
            folded = " ".join(words)
            near = self.near is not None and next(self.near.iter(f" {folded} "), None) is not None
            if not near and self.pair is not None and not is_ascii:  # single letters beyond a-z and 0-9
                near = self.pair.search(f" {folded}") is not None
            if near or (
                self.patterns and (self.loose is None or len(folded) > SCAN_WINDOW or self.loose.search(folded) is not None)
            ):
                best, hits = self._lists(words, folded)
                if best >= _HOLD:
                    return Verdict(best, text, next(h.rule for h in hits if h.action == best))
        link = linked = first = None
        if self.invites is not _LINK_ALLOW and "discord" in (joined := "".join(words)) and INVITE.search(joined):
            link, linked = self.invites, "invites"
        elif self.links is not _LINK_ALLOW and ("." in text or ":" in text):  # a link holds one of them
            first = find_link(text if is_ascii else text.translate(FORMAT))
            if first is not None:
                link, linked = self.links, "links"
        if link is None and best == _ALLOW:
            return None
        if link is _LINK_BLOCK:
            return Verdict(_HOLD, text, linked)
        out, rule = text, None
        if best == _MASK:
            out, rule = _mask(text, [h for h in hits if h.action == _MASK]), hits[0].rule
        if link is _LINK_DEFANG:
            # `first` is the first link in `text` as it is (not masked), format characters dropped.
            out = defang(out, invites_only=self.links is _LINK_ALLOW, first=first if out is text else None)
            rule = rule or linked
        return Verdict(best, out, rule)

    def _lists(self, words: list[str], folded: str) -> tuple[Action, list[_Hit]]:
        """The most severe action the lists give `words` (folded: joined by spaces), and the hits."""
        hits: list[_Hit] = []
        best = _ALLOW
        if not self.listed.isdisjoint(words):  # in C; a listed word or a phrase's first word is there
            table = self.words
            for i, word in enumerate(words):
                found = table.get(word)
                if found is not None:
                    hits.append(_Hit(found[0], found[1], i, i))
                    best = max(best, found[0])
            if self.phrases and not self.phrase_first.isdisjoint(words):
                best = self._phrases(words, hits, best)
        candidates: list[tuple[Action, str, re.Pattern[str]]] | tuple[()] = ()
        if self.pair is not None and self.pair.search(f" {folded}") is not None:
            best = self._runs(words, hits, best)
        if self.starts and best < _END and self._started(words):
            candidates = self._candidates(words)
        if best < _END and (self.patterns or candidates):
            patterns = self.patterns
            if self.loose is not None and len(folded) <= SCAN_WINDOW and self.loose.search(folded) is None:
                patterns = []  # no list's search can find anything either
            if candidates:
                patterns = sorted([*patterns, *candidates], key=_severity)
            if patterns:
                best = self._patterns(patterns, folded, hits, best)
        return best, hits

    def _patterns(self, patterns: list[tuple[Action, str, re.Pattern[str]]], folded: str, hits: list[_Hit], best: Action) -> Action:
        for action, name, regex in patterns:
            if action < best or (action == best and action != Action.MASK):
                continue  # cannot change the outcome
            if len(folded) <= SCAN_WINDOW:  # most messages: one search, no window loop
                if regex.search(folded) is None:
                    continue
                if action != Action.MASK:  # not relayed: where it matched does not matter
                    hits.append(_Hit(action, name, 0, 0))
                    best = action
                    continue
            for a, b in scan(regex, folded):
                first, last = _token_range(folded, a, b)
                hits.append(_Hit(action, name, first, last))
                best = max(best, action)
                if action != Action.MASK:
                    break  # the message is not relayed: where else it matched does not matter
        return best

    def _started(self, words: list[str]) -> bool:
        """Whether a token starts with an anchored pattern's prefix."""
        for start, prefixes in self.starts:
            if not prefixes.isdisjoint(map(start, words)):
                return True
        return False

    def _candidates(self, words: list[str]) -> list[tuple[Action, str, re.Pattern[str]]]:
        found: list[tuple[Action, str, re.Pattern[str]]] = []
        for size, table in self.anchored.items():
            for prefix in table.keys() & {w[:size] for w in words}:
                found.extend(table[prefix])
        return found

    def _phrases(self, words: list[str], hits: list[_Hit], best: Action) -> Action:
        first_words = self.phrase_first
        for i, word in enumerate(words):
            if word not in first_words:
                continue
            for n in self.phrase_lengths:
                if i + n <= len(words):
                    found = self.phrases.get(" ".join(words[i : i + n]))
                    if found is not None:
                        hits.append(_Hit(found[0], found[1], i, i + n - 1))
                        best = max(best, found[0])
        return best

    def _runs(self, words: list[str], hits: list[_Hit], best: Action) -> Action:
        # "f u c k", "f.u.c.k", "a f u c k": any listed word inside a run of single letters.
        table, prefixes = self.words, self.prefixes
        for first, joined in joined_runs(words):
            size = len(joined)
            for offset in range(size):
                for end in range(offset + 2, size + 1):
                    piece = joined[offset:end]
                    if piece not in prefixes:
                        break
                    found = table.get(piece)
                    if found is not None:
                        hits.append(_Hit(found[0], found[1], first + offset, first + end - 1))
                        best = max(best, found[0])
        return best

def _alternation(regexes: list[re.Pattern[str]]) -> re.Pattern[str] | None:
    try:
        return re.compile("|".join(f"(?:{regex.pattern})" for regex in regexes))
    except re.error:  # a group name used in two lists: each list is searched on its own
        return None


_ALLOW, _MASK, _HOLD, _END = Action.ALLOW, Action.MASK, Action.HOLD, Action.END
# Two single-letter tokens in a row, in " " + the folded text: where a run of them starts.
_PAIR = re.compile(r" [^ ] [^ ](?![^ ])")
_FOLDED_ASCII = string.ascii_lowercase + string.digits  # every character of folded ASCII text but the space
_LINK_ALLOW, _LINK_DEFANG, _LINK_BLOCK = LinkAction.ALLOW, LinkAction.DEFANG, LinkAction.BLOCK


def _automaton(keys: set[str]) -> ahocorasick.Automaton:
    found = ahocorasick.Automaton(ahocorasick.STORE_LENGTH)  # what a hit stores is never read
    for key in sorted(keys):
        found.add_word(key)
    found.make_automaton()
    return found


def _severity(entry: tuple[Action, str, re.Pattern[str]]) -> int:
    return -entry[0]


def _variants(words: list[str]) -> list[list[str]]:
    # "1" folds to "i"; a listed "lick" must also catch "1ick", so "l" gets an "i" twin.
    twin = [w.replace("l", "i") for w in words]
    return [words] if twin == words else [words, twin]


def _token_range(folded: str, a: int, b: int) -> tuple[int, int]:
    """The first and last token index that the span [a, b) of the space-joined tokens touches."""
    first = folded.count(" ", 0, a)
    last = first + folded.count(" ", a, max(a, b - 1))
    return first, last


def _mask(text: str, hits: list[_Hit]) -> str:
    words, spans = fold_spans(text)
    chars = list(text)
    for hit in hits:
        start = spans[hit.first][0]
        end = spans[min(hit.last, len(spans) - 1)][1]
        for i in range(start, end):
            if not chars[i].isspace():
                chars[i] = "*"
    return "".join(chars)
