"""The content check as it was before its fast paths (5c80725), kept whole as the oracle the fast check must agree with."""

from __future__ import annotations

import re

from bridge.policy.links import URL  # the pattern is the definition; what is under test is where it is searched
from bridge.policy.normalize import fold_spans, joined_runs, tokens
from bridge.policy.patterns import SCAN_WINDOW, scan
from bridge.policy.rules import Action, ContentRules, LinkAction, Verdict

__all__ = ["reference_check", "reference_defang"]

_MAYBE_LINK = re.compile(r"[^\W_]\.[^\W_]|://")
_SCHEME = re.compile(r"(?i)\b(?:(h)tt(ps?)|(f)t(p))://")
_INVITE = re.compile(r"discord(?:app)?(?:gg|cominvite)[a-z0-9]")
_FORMAT = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"))


def reference_defang(text: str, *, invites_only: bool = False) -> str:
    """Every link (or invite) defanged by substitution with the plain pattern, again until nothing changes."""
    out = text.translate(_FORMAT)

    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        if invites_only and not _INVITE.search("".join(tokens(url))):
            return url
        return _SCHEME.sub(_scheme, url).replace(".", "[.]")

    while (new := URL.sub(one, out)) != out:
        out = new
    return out


def _scheme(match: re.Match[str]) -> str:
    return (match[1] + "xx" + match[2] if match[1] else match[3] + "x" + match[4]) + "://"


def reference_check(rules: ContentRules, text: str) -> Verdict:
    """The verdict of the full check: every step run on every text, nothing skipped."""
    words = tokens(text)
    hits: list[tuple[Action, str, int, int]] = []
    best = Action.ALLOW
    for i, word in enumerate(words):
        found = rules.words.get(word)
        if found is not None:
            hits.append((found[0], found[1], i, i))
            best = max(best, found[0])
    for i in range(len(words)):
        for n in rules.phrase_lengths:
            if i + n <= len(words):
                found = rules.phrases.get(" ".join(words[i : i + n]))
                if found is not None:
                    hits.append((found[0], found[1], i, i + n - 1))
                    best = max(best, found[0])
    for first, joined in joined_runs(words):
        for offset in range(len(joined)):
            for end in range(offset + 2, len(joined) + 1):
                found = rules.words.get(joined[offset:end])
                if found is not None:
                    hits.append((found[0], found[1], first + offset, first + end - 1))
                    best = max(best, found[0])
    patterns = list(rules.patterns)
    for table in rules.anchored.values():
        for entries in table.values():
            patterns.extend(entries)
    patterns.sort(key=lambda entry: -entry[0])
    folded = " ".join(words)
    for action, name, regex in patterns:
        if best == Action.END:
            break
        if action < best or (action == best and action != Action.MASK):
            continue
        if len(folded) <= SCAN_WINDOW:
            if regex.search(folded) is None:
                continue
            if action != Action.MASK:
                hits.append((action, name, 0, 0))
                best = action
                continue
        for a, b in scan(regex, folded):
            first = folded.count(" ", 0, a)
            hits.append((action, name, first, first + folded.count(" ", a, max(a, b - 1))))
            best = max(best, action)
            if action != Action.MASK:
                break
    if best >= Action.HOLD:
        return Verdict(best, text, next(h[1] for h in hits if h[0] == best))
    link = None
    if rules.invites != LinkAction.ALLOW and _INVITE.search("".join(words)):
        link = (rules.invites, "invites")
    elif rules.links != LinkAction.ALLOW:
        stripped = text.translate(_FORMAT)
        if _MAYBE_LINK.search(stripped) and URL.search(stripped):
            link = (rules.links, "links")
    if link is not None and link[0] == LinkAction.BLOCK:
        return Verdict(Action.HOLD, text, link[1])
    out, rule = text, None
    if best == Action.MASK:
        out, rule = _mask(text, [h for h in hits if h[0] == Action.MASK]), hits[0][1]
    if link is not None and link[0] == LinkAction.DEFANG:
        out, rule = reference_defang(out, invites_only=rules.links == LinkAction.ALLOW), rule or link[1]
    return Verdict(best if best == Action.MASK else Action.ALLOW, out, rule)


def _mask(text: str, hits: list[tuple[Action, str, int, int]]) -> str:
    _, spans = fold_spans(text)
    chars = list(text)
    for _, _, first, last in hits:
        for i in range(spans[first][0], spans[min(last, len(spans) - 1)][1]):
            if not chars[i].isspace():
                chars[i] = "*"
    return "".join(chars)
