"""Content rules compiled for speed: word lists and patterns with an action each, and the link policy."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from .normalize import MAX_RUN, fold_spans, joined_runs, tokens
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


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a check: the action, the text to relay, and the rule that decided it."""

    action: Action
    text: str
    rule: str | None = None  # a list name, "links" or "invites"; None when nothing matched


_URL = re.compile(
    r"(?i)\b(?:(?:https?|ftp)://|www\.)[^\s<>]+"
    r"|\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.){1,8}"
    r"(?:com|net|org|io|gg|me|co|uk|de|ru|info|xyz|app|dev|tv|ly|be|link|site|online|top|club|live|gl|to"
    r"|cc|us|biz|fr|nl|eu|ca|tk|ml|ga|cf|gq|ws|su|fun|icu|vip|pro|page|sh|fm|im|is|ai|shop|store|tech)"
    r"\b(?:/[^\s<>]*)?"
)
# Invites after folding and joining every token, so "disc0rd . gg / x" and "d i s c o r d.gg/x" count.
# A cheap first look: no link is possible without one of these.
# (A letter or digit, a dot, a letter or digit: written dot first, the engine's fast literal search finds the candidates.)
_MAYBE_LINK = re.compile(r"\.(?<=[^\W_]\.)(?=[^\W_])|://")
# A scheme as the link pattern sees one (at a word start): anywhere in a link, its path too.
_SCHEME = re.compile(r"(?i)\b(?:(h)tt(ps?)|(f)t(p))://")
_INVITE = re.compile(r"discord(?:app)?(?:gg|cominvite)[a-z0-9]")
_FORMAT = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"))


def defang(text: str, *, invites_only: bool = False) -> str:
    """Every link (or every Discord invite) in `text` made unclickable but readable:
    hxxps://example[.]com/a[.]html. A fixed point: defanging the result changes nothing, and no
    link is left in it (so the receiver's check of a relayed message finds the sender's verdict)."""
    out = text if text.isascii() else text.translate(_FORMAT)  # no format character is ASCII
    one = _defang_invite if invites_only else _defang_one
    # Most texts take one round and a look that finds nothing. Another round is needed only when
    # bracketing a dot lets a shorter link show (a chain of more labels than a link's 8); each
    # round brackets a dot or renames a scheme and never undoes one, so the rounds end.
    while True:
        new = _URL.sub(one, out)
        if new == out:
            return out
        out = new


def _defang_invite(match: re.Match[str]) -> str:
    return _defang_one(match) if _INVITE.search("".join(tokens(match.group(0)))) else match.group(0)


def _defang_one(match: re.Match[str]) -> str:
    # The whole link, its path too: a path may hold what reads as a link of its own ("/x.com").
    return _SCHEME.sub(_scheme, match.group(0)).replace(".", "[.]")


def _scheme(match: re.Match[str]) -> str:
    # hxxp, hxxps, fxp (the usual unclickable spellings); the letters keep their case.
    return (match[1] + "xx" + match[2] if match[1] else match[3] + "x" + match[4]) + "://"


@dataclass(slots=True)
class _Hit:
    action: Action
    rule: str
    first: int  # token index
    last: int  # token index, inclusive


class ContentRules:
    """One compiled policy layer. `check` is the only hot call: one fold, set look-ups, one
    alternation per list, and the slow span-mapping pass only when something must be masked."""

    __slots__ = (
        "words", "phrases", "phrase_lengths", "phrase_first", "prefixes", "patterns", "anchored", "links", "invites",
        "only_invites",
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
        self.links = LinkAction(links)
        self.invites = LinkAction(invites)
        # No lists and links allowed (the default policy): only an invite can matter.
        self.only_invites = not (self.words or self.phrases or self.patterns or self.anchored) and self.links == LinkAction.ALLOW

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
        if verdict.action != Action.ALLOW:
            return False
        if verdict.rule is None:
            return True
        return verdict.rule == "links" and (
            "://" not in text or not (self.words or self.phrases or self.patterns or self.anchored)
        )

    def check(self, text: str) -> Verdict:
        """The verdict on one message (either direction)."""
        if self.clearly_allowed(text):
            return Verdict(Action.ALLOW, text)
        words = tokens(text)
        hits: list[_Hit] = []
        best = Action.ALLOW
        table = self.words
        if not table.keys().isdisjoint(words):  # in C; the loop runs only when a word is there
            for i, word in enumerate(words):
                found = table.get(word)
                if found is not None:
                    hits.append(_Hit(found[0], found[1], i, i))
                    best = max(best, found[0])
        if self.phrases and not self.phrase_first.isdisjoint(words):
            best = self._phrases(words, hits, best)
        if table and len(words) > 1:
            best = self._runs(words, hits, best)
        patterns = self.patterns
        if self.anchored and best < Action.END:
            candidates = self._candidates(words)
            if candidates:
                patterns = sorted(patterns + candidates, key=_severity)
        if patterns and best < Action.END:
            folded = " ".join(words)
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
        if best >= Action.HOLD:
            rule = next(h.rule for h in hits if h.action == best)
            return Verdict(best, text, rule)
        link = self._links(text, words)
        if link is not None and link[0] == LinkAction.BLOCK:
            return Verdict(Action.HOLD, text, link[1])
        out = _mask(text, [h for h in hits if h.action == Action.MASK]) if best == Action.MASK else text
        rule = hits[0].rule if best == Action.MASK else None
        if link is not None and link[0] == LinkAction.DEFANG:
            out, rule = defang(out, invites_only=self.links == LinkAction.ALLOW), rule or link[1]
        return Verdict(best if best == Action.MASK else Action.ALLOW, out, rule)

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

    def _links(self, text: str, words: list[str]) -> tuple[LinkAction, str] | None:
        if self.invites != LinkAction.ALLOW and _INVITE.search("".join(words)):
            return self.invites, "invites"
        if self.links != LinkAction.ALLOW:
            stripped = text if text.isascii() else text.translate(_FORMAT)
            if _MAYBE_LINK.search(stripped) and _URL.search(stripped):
                return self.links, "links"
        return None


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
